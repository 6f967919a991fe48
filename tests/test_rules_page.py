"""The rules panel of the page in headless Chromium: add a rule, see the CPU engine's refusal,
edit, mute and delete, against a real API process. Names are shown as text, never as HTML."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.sources import SourceRegistry
from tests.test_api_support import ApiServer
from tests.test_page import CHROMIUM, CHROMIUM_ARGS

KEY = "rules-page-key"
playwright_api = pytest.importorskip("playwright.async_api")


@pytest.fixture
def server(test_env: dict[str, str]) -> Iterator[ApiServer]:
    if shutil.which(CHROMIUM) is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    api = ApiServer({**test_env, "API_KEYS": f"{KEY}:control", "ENGINE": "cpu"}, "api-rules-page")
    yield api
    api.stop()


async def test_rules_are_added_refused_edited_muted_and_deleted_on_the_page(
    server: ApiServer, redis_client: aioredis.Redis, keys: Keys
) -> None:
    await SourceRegistry(redis_client, keys, "Describe.").register("porch", "clip.mp4")
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.add_init_script(f"localStorage.setItem('lookout.key', '{KEY}')")
            await page.goto(f"{server.url}/?source=porch")
            await page.wait_for_function("document.getElementById('source').value === 'porch'")
            decides = page.locator("#rules-decides")
            await decides.filter(has_text="a person is visible").wait_for(timeout=10_000)

            await page.fill("#rule-name", "Pot")
            await page.fill("#rule-condition", "the pot boils over")
            await page.click("#rule-save")
            await page.locator("#rule-error").filter(has_text="cannot decide").wait_for()

            await page.fill("#rule-name", "<b id=injected>Porch</b>")
            await page.fill("#rule-condition", "someone enters")
            await page.click("#rule-save")
            rule = page.locator("#rules-list li[data-rule]")
            await rule.filter(has_text="<b id=injected>Porch</b>").wait_for()
            assert await page.locator("#injected").count() == 0  # text, not markup
            assert "[off]" in await rule.inner_text() and "never" in await rule.inner_text()

            await rule.get_by_role("button", name="Edit").click()
            await page.fill("#rule-name", "Porch")
            await page.click("#rule-save")
            await rule.filter(has_text="Porch — someone enters").wait_for()
            await rule.get_by_role("button", name="Mute").click()
            await rule.filter(has_text="[muted]").wait_for()
            rule_ids = await redis_client.hkeys(keys.rules("porch"))  # type: ignore[misc]
            assert len(rule_ids) == 1
            stored = await redis_client.hget(keys.rules("porch"), rule_ids[0])  # type: ignore[misc]
            assert b'"muted":true' in stored and b'"name":"Porch"' in stored

            await rule.get_by_role("button", name="Delete").click()
            await page.wait_for_function("!document.querySelector('#rules-list li')")
            assert await redis_client.hlen(keys.rules("porch")) == 0  # type: ignore[misc]
        finally:
            await browser.close()
