"""The interactive API docs at /schema work offline (issue 14): every file the page loads is
served by the API itself, checked over HTTP and in headless Chromium with the internet cut off."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import httpx
import pytest

from api.docs_ui import ASSETS
from tests.test_api_support import ApiServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


@pytest.fixture(scope="module")
def api(redis_server: object) -> Iterator[str]:
    from tests.helpers import RedisServer

    assert isinstance(redis_server, RedisServer)
    server = ApiServer({"REDIS_URL": redis_server.url, "API_KEYS": "k:view"}, "api-schema")
    yield server.url
    server.stop()


def test_the_schema_page_loads_only_files_the_api_serves(api: str) -> None:
    with httpx.Client(base_url=api, timeout=10) as http:
        for path in ("/schema", "/schema/swagger"):
            page = http.get(path)  # public, like the schema itself, even with keys configured
            assert page.status_code == 200 and "SwaggerUIBundle" in page.text
            links = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
            assert len(links) == 4, links  # bundle, preset, css, icon
            assert all(link.startswith("/schema-ui/") for link in links), links
            for link in links:
                asset = http.get(link)
                assert asset.status_code == 200, link
                kind = ASSETS[link.rsplit("/", 1)[1]]
                assert asset.headers.get_list("content-type") in (
                    [kind],
                    [f"{kind}; charset=utf-8"],
                ), link
                assert len(asset.content) > 500
        assert http.get("/schema/openapi.json").json()["info"]["title"] == "Lookout API"
        assert "openapi:" in http.get("/schema/openapi.yaml").text
        for bad in ["swagger-editor.js", "LICENSE", "..%2F__init__.py", "%2e%2e", "x"]:
            response = http.get(f"/schema-ui/{bad}")
            assert response.status_code == 404, (bad, response.text)
        assert http.get("/schema/redoc").status_code == 404  # the CDN-only pages are gone


playwright_api = pytest.importorskip("playwright.async_api")


async def test_swagger_ui_renders_with_the_internet_cut_off(api: str) -> None:
    if shutil.which(CHROMIUM) is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    outside: list[str] = []
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()

            async def only_the_api(route: object) -> None:
                url = route.request.url  # type: ignore[attr-defined]
                if url.startswith(api):
                    await route.continue_()  # type: ignore[attr-defined]
                else:
                    outside.append(url)
                    await route.abort()  # type: ignore[attr-defined]

            await page.route("**/*", only_the_api)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(api + "/schema")
            title = page.locator(".swagger-ui .info .title")
            await title.wait_for(timeout=20_000)
            assert "Lookout API" in await title.inner_text()
            operations = await page.locator(".opblock").count()
            assert operations >= 10  # the routes are listed
        finally:
            await browser.close()
    assert outside == [] and errors == [], (outside, errors)
