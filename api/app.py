"""The Litestar application: controllers, auth, errors, CORS, OpenAPI, static page."""

from __future__ import annotations

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.static_files import create_static_files_router

from api import routes
from api.boundary import check_boundary
from api.controllers.asks import AsksController
from api.controllers.frames import WindowFramesController
from api.controllers.history import HistoryController
from api.controllers.livekit import LivekitController
from api.controllers.models import ModelsController
from api.controllers.rules import RulesController
from api.controllers.sources import SourcesController
from api.controllers.status import PublicController, StatusController
from api.controllers.streams import StreamsController
from api.controllers.tokens import TokensController
from api.deps import DEPENDENCIES
from api.docs_ui import render_plugins, schema_asset
from api.errors import (
    REDIS_FAILURES,
    cluster_unsupported_handler,
    http_exception_handler,
    internal_error_handler,
    redis_error_handler,
)
from api.metrics import latency_middleware_factory
from api.state import STATIC_DIR, AppState
from shared.cluster import ClusterUnsupported
from shared.settings import Settings

MAX_BODY_BYTES = 64 * 1024  # JSON bodies are small; a bigger one is a mistake or an attack


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Lookout API",
        version="1",
        description=(
            "Live AI commentary on video. With API keys configured, send "
            "`Authorization: Bearer KEY`. Media URLs that cannot carry headers (EventSource, "
            "<img>, WebSocket) take `?token=` from POST /api/tokens instead; keys are never "
            "accepted in URLs."
        ),
        path=routes.SCHEMA,
        render_plugins=render_plugins(),  # served from local files: works offline
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer"),
                "media_token": SecurityScheme(
                    type="apiKey", name="token", security_scheme_in="query"
                ),
            }
        ),
    )


def cors_config(settings: Settings) -> CORSConfig | None:
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if not origins:
        return None
    return CORSConfig(
        allow_origins=origins,
        allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
        expose_headers=["Retry-After", "X-Audio-Sample-Rate", "X-Audio-Format", "X-Frame-Seq"],
    )


def create_app(settings: Settings) -> Litestar:
    """The API of one process; state is created here and closed on shutdown."""
    state = AppState(settings)
    return Litestar(
        route_handlers=[
            LivekitController,
            SourcesController,
            StreamsController,
            AsksController,
            StatusController,
            PublicController,
            TokensController,
            WindowFramesController,
            RulesController,
            HistoryController,
            schema_asset,
            ModelsController,
            create_static_files_router(routes.STATIC, [STATIC_DIR], name="static"),
        ],
        dependencies=DEPENDENCIES,
        guards=[check_boundary],
        state=State({"lookout": state}),
        on_shutdown=[state.close],
        exception_handlers={
            HTTPException: http_exception_handler,
            **dict.fromkeys(REDIS_FAILURES, redis_error_handler),
            ClusterUnsupported: cluster_unsupported_handler,
            Exception: internal_error_handler,
        },
        middleware=[latency_middleware_factory(state.metrics)],
        cors_config=cors_config(settings),
        openapi_config=openapi_config(),
        request_max_body_size=MAX_BODY_BYTES,
    )
