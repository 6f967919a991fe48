"""The interactive API documentation at /schema, served whole by the API (it works offline).

Litestar's schema pages load their scripts, styles, fonts and icon from CDNs, so they are blank
without the internet. Lookout keeps one of them, Swagger UI, and serves its files itself: they
come from the pinned `swagger-ui-py` package (a copy of swagger-ui-dist), read from its folder
without importing it. The raw schema stays at /schema/openapi.json and /schema/openapi.yaml.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

from litestar import Response, get
from litestar.openapi.plugins import (
    JsonRenderPlugin,
    OpenAPIRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)

from api import routes
from api.errors import NotFound

# The only files the pages need, with their types: nothing else of the package is served.
# (Litestar adds `; charset=utf-8` to text types itself.)
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
ASSET_CACHE = {"Cache-Control": "public, max-age=86400"}


def asset_url(name: str) -> str:
    return routes.SCHEMA_ASSET.replace("{asset:str}", name)


def render_plugins() -> list[OpenAPIRenderPlugin]:
    """Swagger UI at /schema and /schema/swagger from local files, and the raw schema."""
    favicon = f"<link rel='icon' type='image/png' href='{asset_url('favicon-32x32.png')}'>"
    return [
        SwaggerRenderPlugin(
            path=["/", "/swagger"],
            js_url=asset_url("swagger-ui-bundle.js"),
            css_url=asset_url("swagger-ui.css"),
            standalone_preset_js_url=asset_url("swagger-ui-standalone-preset.js"),
            favicon=favicon,
        ),
        JsonRenderPlugin(),
        YamlRenderPlugin(),
    ]


@cache
def asset_dir() -> Path:
    """swagger-ui-py's folder of swagger-ui-dist files (found, not imported)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed: pip install 'swagger-ui-py==25.7.1'")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


@cache
def _read(name: str) -> bytes:
    return (asset_dir() / name).read_bytes()


@get(
    routes.SCHEMA_ASSET,
    name="schema:asset",
    operation_id="getSchemaAsset",
    include_in_schema=False,
    sync_to_thread=False,
)
def schema_asset(asset: str) -> Response[bytes]:
    """One file of the schema page (404 for any other name)."""
    media_type = ASSETS.get(asset)
    if media_type is None:
        raise NotFound(detail=f"no schema page asset {asset!r}")
    return Response(_read(asset), media_type=media_type, headers=ASSET_CACHE)
