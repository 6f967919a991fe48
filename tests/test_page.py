"""The page in headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

A real API process with keys, frames and commentary written to Redis with the bus contract:
the video canvas shows frames, commentary streams in, an instruction typed in the box
reaches the worker's control channel, and speech starts playing when PCM chunks arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import cv2
import numpy as np
import pytest
import redis.asyncio as aioredis

from shared.bus import SourcePublisher
from shared.keys import Keys
from shared.messages import (
    AudioChunk,
    CycleStarted,
    InstructionChanged,
    TextChunk,
    decode_message,
)
from shared.sources import SourceRegistry
from tests.helpers import REPO
from tests.test_api_support import ApiServer, add_frame, make_jpeg, say, wait_until

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY = "page-control-key"
ARTIFACTS = REPO / "test-artifacts"

playwright_api = pytest.importorskip("playwright.async_api")


@pytest.fixture
def server(test_env: dict[str, str]) -> Iterator[ApiServer]:
    if shutil.which(CHROMIUM) is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    # ENABLE_TTS: the API would answer /audio with 409 if speech were off.
    env = {
        **test_env,
        "API_KEYS": f"{KEY}:control",
        "STREAM_DELAY_INIT": "0.5",
        "ENABLE_TTS": "true",
    }
    api = ApiServer(env, "api-page")
    yield api
    api.stop()


@pytest.fixture
async def frames(redis_client: aioredis.Redis, keys: Keys) -> AsyncIterator[None]:
    """A source publishing real JPEG frames at 5 fps for the whole test."""
    await SourceRegistry(redis_client, keys, "Describe the scene.").register("cam", "clip.mp4")

    async def feed() -> None:
        for seq in range(1, 10_000):
            await add_frame(redis_client, keys, "cam", seq, make_jpeg(seq, 640, 360))
            await asyncio.sleep(0.2)

    task = asyncio.create_task(feed())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def debug(page: Any, field: str) -> Any:
    return await page.evaluate(f"window.lookoutDebug && window.lookoutDebug.{field}")


async def test_page_shows_video_commentary_instruction_and_speech(
    server: ApiServer, frames: None, redis_client: aioredis.Redis, keys: Keys
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            prompts: list[str] = []

            async def answer(dialog: Any) -> None:
                prompts.append(dialog.message)
                await dialog.accept(KEY)

            page.on("dialog", answer)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(server.url + "/")

            # Video: frames are decoded and drawn on the canvas, behind by the delay.
            await wait_until(lambda: debug(page, "drawn"), timeout=15)
            assert prompts and "API key" in prompts[0]  # asked once for the key
            canvas = await page.locator("#video").screenshot(path=str(ARTIFACTS / "page-video.png"))
            pixels = cv2.imdecode(np.frombuffer(canvas, np.uint8), cv2.IMREAD_COLOR)
            assert pixels is not None and float(pixels.std()) > 20  # not blank

            # Commentary streams in word by word and lands in the history.
            await say(redis_client, keys, "cam", "c1", ["A white ", "square ", "moves right."])
            await page.wait_for_function(
                "document.getElementById('live').textContent.includes('square moves right')",
                timeout=10_000,
            )
            await page.wait_for_function(
                "document.getElementById('history').textContent.includes('square moves right')",
                timeout=10_000,
            )

            # The instruction box reaches the worker's control channel and the state hash.
            pubsub = redis_client.pubsub()
            await pubsub.subscribe(keys.control_channel("cam"))
            await page.fill("#instruction", "Count the squares.")
            await page.click("#instruction-form button")
            got = await wait_until(
                lambda: pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2),
                timeout=10,
            )
            message = decode_message(got["data"])
            assert isinstance(message, InstructionChanged)
            assert message.instruction == "Count the squares."
            state = await redis_client.hgetall(keys.source_state("cam"))  # type: ignore[misc]
            assert state[b"instruction"] == b"Count the squares."
            await pubsub.aclose()  # type: ignore[no-untyped-call]

            # Speech: turned on by a click, the <audio> element plays the Ogg/Opus stream.
            await page.click("#speech")
            await wait_until(lambda: _audio_viewer(page, server.url), timeout=10)
            pub = SourcePublisher(redis_client, keys, "cam")
            tone = (np.sin(np.arange(9600) / 10) * 8000).astype("<i2").tobytes()
            chunks = iter(range(1000))

            async def playing() -> bool:
                seq = next(chunks)
                await pub.audio(AudioChunk(source="cam", cycle="c2", seq=seq, pcm=tone))
                return bool(await debug(page, "audioElement") == "playing")

            await wait_until(playing, timeout=15, interval=0.3)

            # The key is remembered: a reload asks nothing and still shows video.
            await page.reload()
            await wait_until(lambda: debug(page, "drawn"), timeout=15)
            assert len(prompts) == 1
            await page.screenshot(path=str(ARTIFACTS / "page.png"))
            assert errors == []
        finally:
            await browser.close()


async def _audio_viewer(page: Any, url: str) -> bool:
    text = await page.evaluate(
        "async (u) => (await fetch(u + '/metrics', {headers: {Authorization: "
        "'Bearer ' + localStorage.getItem('lookout.key')}})).text()",
        url,
    )
    return 'lookout_api_viewers{kind="opus"} 1.0' in text


async def test_use_my_webcam_sends_frames_over_the_ingest_websocket(
    server: ApiServer, frames: None, redis_client: aioredis.Redis, keys: Keys
) -> None:
    fake_camera = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS + fake_camera
        )
        try:
            page = await browser.new_page()

            async def answer(dialog: Any) -> None:
                await dialog.accept(KEY if "API key" in dialog.message else "mycam")

            page.on("dialog", answer)
            await page.goto(server.url + "/")
            await wait_until(lambda: debug(page, "drawn"), timeout=15)
            await page.click("#webcam")
            length = await wait_until(lambda: redis_client.xlen(keys.frames("mycam")), timeout=15)
            assert length >= 1
            assert await redis_client.sismember(keys.sources, "mycam")  # type: ignore[misc]
            await page.click("#webcam")  # stops the camera again
        finally:
            await browser.close()


@pytest.fixture
def delayed_server(test_env: dict[str, str]) -> Iterator[ApiServer]:
    if shutil.which(CHROMIUM) is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    api = ApiServer({**test_env, "STREAM_DELAY_INIT": "3"}, "api-page-delay")
    yield api
    api.stop()


async def test_words_wait_until_the_video_shows_their_frames(
    delayed_server: ApiServer, frames: None, redis_client: aioredis.Redis, keys: Keys
) -> None:
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(delayed_server.url + "/")
            await wait_until(lambda: debug(page, "drawn"), timeout=15)
            # A cycle about the frame captured just now: the video shows it ~3 s from now.
            newest = time.time()
            pub = SourcePublisher(redis_client, keys, "cam")
            await pub.event(CycleStarted(source="cam", cycle="s1", frame_ts=[newest]))
            await pub.text(TextChunk(source="cam", cycle="s1", seq=0, text="Held words."))
            await wait_until(lambda: debug(page, "held"), timeout=5)
            await asyncio.sleep(1.0)
            assert "Held words." not in await page.text_content("#live")  # type: ignore[operator]
            await page.wait_for_function(
                "document.getElementById('live').textContent.includes('Held words.')",
                timeout=10_000,
            )
            # Shown only once the picture had reached the frame the words are about.
            assert await debug(page, "shownTs") >= newest
            # Live (delay 0): words show at once.
            await page.fill("#delay", "0")
            await pub.event(CycleStarted(source="cam", cycle="s2", frame_ts=[time.time()]))
            await pub.text(TextChunk(source="cam", cycle="s2", seq=0, text="Live words."))
            await page.wait_for_function(
                "document.getElementById('live').textContent.includes('Live words.')", timeout=2_000
            )
        finally:
            await browser.close()
