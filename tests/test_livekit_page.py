"""The page's LiveKit options in headless Chromium, as far as they go without a server (issue 16):
the room token request (the right source, publish or not, the key in a header), the bundled
LiveKit client loading from /static/vendor/ (never another host), and a clear message when the
server cannot be reached or the key may not publish. tests/test_livekit_real.py goes further
when a LiveKit server is at hand."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from livekit.api import TokenVerifier

from lookout.vendor import BUNDLE, DEST, VERSION, installed
from shared.keys import Keys
from shared.sources import SourceRegistry
from tests.helpers import RedisServer, free_port
from tests.test_api_support import ApiServer
from tests.test_page import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.slow
playwright_api = pytest.importorskip("playwright.async_api")

CONTROL = "lk-page-control-key"
VIEW = "lk-page-view-key"
LK_KEY = "pagekey"
LK_SECRET = "page-test-livekit-secret-of-32-chars-or-more"


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"lkp{os.getpid()}"


@pytest.fixture(scope="module")
def server(redis_server: RedisServer, prefix: str) -> Iterator[ApiServer]:
    if shutil.which(CHROMIUM) is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    if not installed():
        pytest.skip(f"{DEST / BUNDLE} is missing: run python -m lookout.vendor")
    env = {
        "REDIS_URL": redis_server.url,
        "KEY_PREFIX": prefix,
        "API_KEYS": f"{CONTROL}:control,{VIEW}:view",
        # Where browsers are sent: a closed port, as no LiveKit server runs here.
        "LIVEKIT_PUBLIC_URL": f"ws://127.0.0.1:{free_port()}",
        "LIVEKIT_API_KEY": LK_KEY,
        "LIVEKIT_API_SECRET": LK_SECRET,
    }
    api = ApiServer(env, "api-livekit-page")
    yield api
    api.stop()


@pytest.fixture
async def browser(
    server: ApiServer, redis_client: aioredis.Redis, prefix: str
) -> AsyncIterator[Any]:
    await SourceRegistry(redis_client, Keys(prefix), "Describe.").register("cam", "clip.mp4")
    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                *CHROMIUM_ARGS,
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
            ],
        )
        try:
            yield chromium
        finally:
            await chromium.close()


async def new_tab(browser: Any, server: ApiServer) -> Any:
    """A fresh browser profile's tab that records its requests and script errors."""
    context = await browser.new_context()
    await context.grant_permissions(["camera"], origin=server.url)
    tab = await context.new_page()
    tab.requests = []
    tab.on("request", lambda r: tab.requests.append(r))
    tab.errors = []
    tab.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    return tab


async def open_page(page: Any, url: str, key: str) -> None:
    await page.add_init_script(f"localStorage.setItem('lookout.key', {json.dumps(key)})")
    await page.goto(url + "/")
    await page.wait_for_function(
        "document.getElementById('source').value === 'cam'", timeout=15_000
    )


async def test_watch_and_camera_request_tokens_and_load_the_bundled_client(
    browser: Any, server: ApiServer
) -> None:
    # Watching, with a control key: token, then the bundled client, then no server.
    page = await new_tab(browser, server)
    await open_page(page, server.url, CONTROL)
    assert await page.evaluate("window.LivekitClient === undefined")  # loaded only when used
    await page.click("#lk-watch")
    await page.wait_for_function("window.lookoutLivekit.state === 'failed'", timeout=30_000)
    state = await page.evaluate("window.lookoutLivekit")
    assert state["tokenRequests"] == 1 and state["sdkLoaded"] is True
    assert state["sdkVersion"] == VERSION
    # The token request: this source, watching only, the key in a header and not in the URL.
    posts = [r for r in page.requests if r.method == "POST" and "livekit-token" in r.url]
    assert [urlsplit(r.url).path for r in posts] == ["/api/sources/cam/livekit-token"]
    assert json.loads(posts[0].post_data) == {"publish": False}
    assert posts[0].headers["authorization"] == f"Bearer {CONTROL}"
    grant = state["grant"]
    assert grant["room"] == "lookout-cam" and grant["can_publish"] is False
    video = TokenVerifier(LK_KEY, LK_SECRET).verify(grant["token"]).video
    assert video is not None and video.room == "lookout-cam"
    # The client came from this server's /static/vendor/, and nothing from any other host
    # except the LiveKit server the token names.
    scripts = [urlsplit(r.url).path for r in page.requests if r.resource_type == "script"]
    assert f"/static/vendor/{BUNDLE}" in scripts
    hosts = {urlsplit(r.url).netloc for r in page.requests if r.url.startswith("http")}
    livekit_host = urlsplit(grant["url"]).netloc
    assert hosts <= {urlsplit(server.url).netloc, livekit_host}
    assert livekit_host in hosts  # the client did try the server the token names
    # No server: the page says so instead of failing silently.
    status = await page.text_content("#lk-status")
    assert status.startswith("LiveKit: ") and len(status) > len("LiveKit: ")
    assert page.errors == []

    # Sending a camera with a view key: it asks to publish and is refused with the reason.
    page = await new_tab(browser, server)
    await open_page(page, server.url, VIEW)
    await page.click("#lk-camera")
    await page.wait_for_function("window.lookoutLivekit.state === 'failed'", timeout=30_000)
    posts = [r for r in page.requests if r.method == "POST" and "livekit-token" in r.url]
    assert json.loads(posts[0].post_data) == {"publish": True}
    assert "only a control key may publish" in await page.text_content("#lk-status")
    # Refused before anything else: the client was not even loaded.
    assert await page.evaluate("window.lookoutLivekit.sdkLoaded") is False
    assert page.errors == []
