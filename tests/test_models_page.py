"""The models panel of the page (api/static/models.js) in headless Chromium: who serves what,
how fast, and a required model nobody serves. Heartbeats are written as workers write them."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.models import require_model
from shared.sources import SourceRegistry
from shared.status_records import WorkerBeat
from tests.test_api_support import ApiServer

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"  # Debian's; never a browser download
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
playwright_api = pytest.importorskip("playwright.async_api")


@pytest.fixture
def server(test_env: dict[str, str]) -> Iterator[ApiServer]:
    if shutil.which(CHROMIUM) is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    api = ApiServer(test_env, "api-models-page")
    yield api
    api.stop()


async def test_page_lists_workers_models_speed_and_unserved_models(
    server: ApiServer, redis_client: aioredis.Redis, keys: Keys
) -> None:
    registry = SourceRegistry(redis_client, keys, "Describe.")
    for name in ("door", "yard"):
        await registry.register(name)
    await require_model(redis_client, keys, "door", "openbmb/MiniCPM-o-4_5")
    await require_model(redis_client, keys, "yard", "ximg-src-x")
    beat = WorkerBeat(
        worker="gpu-1",
        engine="openai",
        model="openbmb/MiniCPM-o-4_5",
        modalities=["image", "text"],
        tokens_per_s=41.25,
        server="http://vllm:8000/v1",
        server_models=["openbmb/MiniCPM-o-4_5"],
        sources=["door"],
        beat_ts=time.time(),
    )
    await redis_client.hset(keys.worker_status("gpu-1"), mapping=beat.to_fields())  # type: ignore[misc]
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(server.url + "/")
            await page.wait_for_function(
                "document.getElementById('models-box').textContent.includes('gpu-1')",
                timeout=15_000,
            )
            await page.click("#models-box summary")
            text: Any = await page.locator("#models-box").inner_text()
        finally:
            await browser.close()
    assert "openbmb/MiniCPM-o-4_5" in text and "41.3" in text and "door" in text
    assert "nobody serves it" in text and "ximg-src-x" in text
    assert not errors
