"""The page's states in headless Chromium: time and truth (issue 14).

One API process, one browser and one frame feeder serve every test here (each test has its
own sources and its own browser context), so the whole module runs in well under a minute.
Events are written to Redis with the bus contract, as a worker would. Screenshots at desktop
and phone size go to test-artifacts/.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from shared.bus import SourcePublisher
from shared.keys import Keys
from shared.messages import (
    AudioChunk,
    CycleFinished,
    CycleFirstChunk,
    CycleStarted,
    TextChunk,
)
from shared.records import CommentaryRecord, FrameRecord
from shared.sources import SourceRegistry
from shared.status_records import WorkerBeat
from tests.helpers import REPO, RedisServer
from tests.test_api_support import ApiServer, add_frame, make_jpeg, wait_until
from tests.test_page import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
playwright_api = pytest.importorskip("playwright.async_api")

ARTIFACTS = REPO / "test-artifacts"
DESKTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
PREFIX = "tpageviews"
DELAY_INIT = 2.0  # the auto delay before any latency is measured
FAKE_CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


@pytest.fixture(scope="module")
def server(redis_server: RedisServer) -> Iterator[ApiServer]:
    if shutil.which(CHROMIUM) is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    env = {
        "REDIS_URL": redis_server.url,
        "KEY_PREFIX": PREFIX,
        "STREAM_DELAY_INIT": str(DELAY_INIT),
        "SSE_REPLAY": "5",
        "ENABLE_TTS": "true",  # else /audio answers 409
    }
    api = ApiServer(env, "api-page-views")
    yield api
    api.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()


KEYS = Keys(PREFIX)


class Feeder:
    """Real JPEG frames at 5 fps for every source in `sources` (added by the tests)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.sources: set[str] = set()
        self.seq = 0

    async def run(self) -> None:
        while True:
            self.seq += 1
            for name in list(self.sources):
                await add_frame(self.redis, KEYS, name, self.seq, make_jpeg(self.seq, 640, 360))
            await asyncio.sleep(0.2)

    async def source(self, name: str, instruction: str = "Describe the scene.") -> None:
        """Register `name` with `instruction` and start feeding it frames."""
        await SourceRegistry(self.redis, KEYS, instruction).register(name, f"{name}.mp4")
        self.sources.add(name)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def feeder(redis: aioredis.Redis, server: ApiServer) -> AsyncIterator[Feeder]:
    feed = Feeder(redis)
    task = asyncio.create_task(feed.run())
    yield feed
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(server: ApiServer) -> AsyncIterator[Any]:
    ARTIFACTS.mkdir(exist_ok=True)
    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS + FAKE_CAMERA
        )
        yield chromium
        await chromium.close()


class Viewer:
    """One browser context on the page, its uncaught errors and its dialog answers."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        self.prompt_answer = ""
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("dialog", self._dialog)

    async def _dialog(self, dialog: Any) -> None:
        await dialog.accept(self.prompt_answer)

    async def debug(self, field: str) -> Any:
        return await self.page.evaluate(f"window.lookoutDebug && window.lookoutDebug.{field}")

    async def until(self, script: str, timeout: float = 10) -> Any:  # noqa: ASYNC109
        """Wait until the JS expression `script` is truthy in the page."""
        return await self.page.wait_for_function(script, timeout=timeout * 1000)

    async def text(self, selector: str) -> str:
        return str(await self.page.text_content(selector) or "")

    async def shot(self, name: str) -> None:
        await self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


@contextlib.asynccontextmanager
async def viewer(
    browser: Any, url: str, viewport: dict[str, int] = DESKTOP
) -> AsyncIterator[Viewer]:
    context = await browser.new_context(viewport=viewport)
    try:
        page = Viewer(await context.new_page())
        await page.page.goto(url)
        yield page
        assert page.errors == []
    finally:
        await context.close()


async def newest_frames(redis: aioredis.Redis, source: str, count: int) -> list[FrameRecord]:
    entries = await redis.xrevrange(KEYS.frames(source), count=count)
    return [FrameRecord.from_fields(fields) for _, fields in reversed(entries)]


async def comment(
    redis: aioredis.Redis,
    source: str,
    cycle: str,
    text: str,
    frames: list[FrameRecord],
    *,
    model: str = "MiniCPM-o-4_5",
    extra_seqs: tuple[tuple[int, float], ...] = (),
) -> str:
    """A whole commentary cycle as a worker publishes it: 20 tokens in 0.5 s (40 tok/s)."""
    pub = SourcePublisher(redis, KEYS, source)
    seqs = [f.seq for f in frames] + [s for s, _ in extra_seqs]
    stamps = [f.ts for f in frames] + [t for _, t in extra_seqs]
    await pub.event(CycleStarted(source=source, cycle=cycle, frame_seqs=seqs, frame_ts=stamps))
    await pub.event(CycleFirstChunk(source=source, cycle=cycle, latency_ms=300.0))
    await pub.text(TextChunk(source=source, cycle=cycle, seq=0, text=text))
    record = CommentaryRecord(
        cycle=cycle,
        status="finished",
        text=text,
        instruction="i",
        worker="w1",
        started_at=time.time() - 0.5,
        duration_ms=500.0,
        latency_ms=300.0,
        tokens=20,
        frame_seqs=seqs,
    )
    raw = await redis.xadd(KEYS.history(source), record.to_fields())  # type: ignore[arg-type]
    history_id = raw.decode() if isinstance(raw, bytes) else str(raw)
    await pub.event(
        CycleFinished(
            source=source,
            cycle=cycle,
            text=text,
            tokens=20,
            duration_ms=500.0,
            history_id=history_id,
            latency_ms=300.0,
            model=model,
        )
    )
    return history_id


async def test_auto_delay_buffers_then_follows_the_measured_latency(
    server: ApiServer, feeder: Feeder, browser: Any, redis: aioredis.Redis
) -> None:
    await feeder.source("delay")
    async with viewer(browser, server.url + "/?source=delay") as v:
        # Until the held-back video is due, the canvas says why it is empty.
        await v.until("document.getElementById('video-state').textContent.includes('Buffering')")
        assert await v.page.is_checked("#delay-auto")
        assert "no latency measured yet" in await v.text("#delay-info")
        assert float(await v.page.input_value("#delay")) == DELAY_INIT
        await v.shot("page-buffering-desktop")
        await v.until("window.lookoutDebug.videoState === 'playing'", timeout=10)
        assert await v.page.is_hidden("#video-state")
        # Measured first-chunk latencies 0.1 … 1.0 s: p90 0.9 s + 0.3 s margin.
        pub = SourcePublisher(redis, KEYS, "delay")
        for n in range(1, 11):
            await pub.event(CycleFirstChunk(source="delay", cycle=f"l{n}", latency_ms=n * 100.0))
        await v.until("window.lookoutDebug.delay === 1.2")
        assert await v.page.input_value("#delay") == "1.2"
        assert "p90 0.90 s" in await v.text("#delay-info")
        # Typing a delay makes it manual.
        await v.page.fill("#delay", "0")
        assert not await v.page.is_checked("#delay-auto")
        assert await v.text("#delay-info") == "manual"


async def test_commentary_shows_age_model_speed_thumbnail_and_its_frames(
    server: ApiServer, feeder: Feeder, browser: Any, redis: aioredis.Redis
) -> None:
    await feeder.source("talk")
    async with viewer(browser, server.url + "/?source=talk") as v:
        await v.until("window.lookoutDebug.videoState === 'playing'")
        frames = await newest_frames(redis, "talk", 3)
        trimmed = ((1, time.time() - 3600),)  # long gone from the frames stream
        history_id = await comment(
            redis, "talk", "t1", "A white square moves right.", frames, extra_seqs=trimmed
        )
        await v.until("document.getElementById('history').textContent.includes('square moves')")
        item = v.page.locator("#history li").first
        assert await item.locator(".model").text_content() == "MiniCPM-o-4_5"
        assert await item.locator(".speed").text_content() == "40.0 tok/s"
        first_age = await item.locator("time.age").text_content()
        assert first_age is not None and first_age.endswith("s ago")
        await v.until(
            f"document.querySelector('#history time.age').textContent !== {first_age!r}",
            timeout=5,
        )  # the age keeps counting
        # The thumbnail: the snapshot when the API keeps them, else a plain "frames" button.
        async with httpx.AsyncClient(base_url=server.url) as http:
            snap = await http.get(f"/api/sources/talk/history/{history_id}/snapshot.jpg")
        if snap.status_code == 200:
            await v.until("document.querySelector('#history .thumb img')?.naturalWidth > 0")
        else:
            await v.until("document.querySelector('#history .thumb.none')")
        await v.shot("page-commentary-desktop")
        # A click shows the window's frames; the trimmed one says it is no longer kept.
        await item.locator(".thumb").click()
        await v.until("document.querySelectorAll('#frames-list figure').length === 4")
        await v.until(
            "[...document.querySelectorAll('#frames-list img')].filter(i => i.naturalWidth).length === 3"
        )
        await v.until("document.querySelectorAll('#frames-list figure.gone').length === 1")
        gone = v.page.locator("#frames-list figure.gone")
        assert "frame 1" in str(await gone.text_content())
        assert "no longer kept" in str(await gone.text_content())
        await v.shot("page-frames-desktop")
        await v.page.click("#frames-close")
        assert not await v.page.locator("#frames-dialog").evaluate("d => d.open")


async def test_answers_are_set_apart_with_their_question(
    server: ApiServer, feeder: Feeder, browser: Any, redis: aioredis.Redis
) -> None:
    await feeder.source("quiz")
    async with viewer(browser, server.url + "/?source=quiz") as v:
        await v.until("window.lookoutDebug.videoState === 'playing'")
        await v.page.fill("#question", "What colour is the square?")
        await v.page.click("#ask-form button")
        await v.until("document.querySelector('#answers li.waiting')")
        assert "question queued" in await v.text("#status")
        job_id = await v.page.get_attribute("#answers li", "data-job")
        assert job_id
        pub = SourcePublisher(redis, KEYS, "quiz")
        ask = {"kind": "answer", "job_id": job_id, "question": "What colour is the square?"}
        await pub.event(CycleStarted(source="quiz", cycle="a1", **ask))
        await pub.text(TextChunk(source="quiz", cycle="a1", seq=0, text="White.", **ask))
        record = CommentaryRecord(
            cycle="a1", status="finished", text="White.", instruction="", kind="answer",
            question=ask["question"], job_id=job_id,
        )  # fmt: skip
        raw = await redis.xadd(KEYS.history("quiz"), record.to_fields())  # type: ignore[arg-type]
        await pub.event(
            CycleFinished(
                source="quiz", cycle="a1", text="White.", tokens=2, duration_ms=100.0,
                history_id=raw.decode(), model="cpu", **ask,
            )
        )  # fmt: skip
        await v.until("document.getElementById('status').textContent.startsWith('answered')")
        answer = v.page.locator("#answers li")
        assert await answer.count() == 1
        assert await answer.locator(".question").text_content() == "What colour is the square?"
        assert await answer.locator(".text").text_content() == "White."
        assert "White." not in await v.text("#history")  # not mixed with the commentary
        await comment(redis, "quiz", "c1", "A white square.", await newest_frames(redis, "quiz", 2))
        await v.until("document.getElementById('history').textContent.includes('white square')")
        await v.shot("page-desktop")
    # A replayed commentary's event is gone: its model is the one its worker's heartbeat names.
    beat = WorkerBeat(
        worker="w1", engine="minicpmo", checkpoint="/m/Replay-Model", beat_ts=time.time()
    )
    await redis.hset(KEYS.worker_status("w1"), mapping=beat.to_fields())  # type: ignore[misc]
    async with viewer(browser, server.url + "/?source=quiz", PHONE) as phone:
        # A fresh page lists the answer again from the history replay, still apart.
        await phone.until("document.querySelector('#answers li .text')?.textContent === 'White.'")
        await phone.until(
            "document.querySelector('#history .model')?.textContent === 'Replay-Model'"
        )
        await phone.until("window.lookoutDebug.videoState === 'playing'")
        await phone.shot("page-phone")


async def test_grid_shows_every_source_and_opens_one(
    server: ApiServer, feeder: Feeder, browser: Any, redis: aioredis.Redis
) -> None:
    for name in ("north", "south"):
        await feeder.source(name)
        await comment(redis, name, f"{name}1", f"Quiet {name} side.", [])
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        async with viewer(browser, server.url + "/?source=north", viewport) as v:
            await v.page.click("#grid-toggle")
            assert await v.page.get_attribute("#grid-toggle", "aria-pressed") == "true"
            assert await v.page.is_hidden("#single")
            tiles = "[...document.querySelectorAll('#grid .tile')]"
            await v.until(f"{tiles}.filter(t => t.querySelector('img')?.naturalWidth).length >= 2")
            await v.until(f"{tiles}.some(t => t.textContent.includes('Quiet south side.'))")
            # The footer counts the tiles shown (it said "all 0 sources" when clicked early).
            count = await v.page.evaluate(f"{tiles}.length")
            footer = await v.page.text_content("#status")
            assert footer == f"{count} sources: click one to open it"
            await v.shot(f"page-grid-{size}")
        assert v.errors == []
    async with viewer(browser, server.url + "/?source=north") as v:
        await v.page.click("#grid-toggle")  # before the page has listed the sources, too
        await v.page.click("#grid .tile[data-source=south]")
        assert await v.page.is_visible("#single")
        assert await v.page.input_value("#source") == "south"
        await v.until("document.getElementById('history').textContent.includes('south side')")


async def test_switching_and_adding_sources_keep_the_page_true(
    server: ApiServer, feeder: Feeder, browser: Any
) -> None:
    await feeder.source("east", "Count the cars.")
    await feeder.source("west", "Watch the door.")
    async with viewer(browser, server.url + "/?source=east") as v:
        await v.until("document.getElementById('instruction').value === 'Count the cars.'")
        # Switching shows the other source's instruction, and back.
        await v.page.select_option("#source", "west")
        assert await v.page.input_value("#instruction") == "Watch the door."
        await v.page.select_option("#source", "east")
        assert await v.page.input_value("#instruction") == "Count the cars."
        await v.until("window.lookoutDebug.videoState === 'playing'")
        # A new source (no frames yet): the old picture does not stay under its name.
        await v.page.click("#add-box summary")
        await v.page.fill("#add-name", "fresh")
        await v.page.fill("#add-url", "media/fresh.mp4")
        await v.page.click("#add-form button")
        await v.until("document.getElementById('source').value === 'fresh'")
        assert "Waiting for the first frame of fresh" in await v.text("#video-state")
        blank = await v.page.evaluate(
            "(() => { const c = document.getElementById('video');"
            " return c.getContext('2d').getImageData(0, 0, c.width, c.height).data"
            ".every((x, i) => i % 4 === 3 || x === 0); })()"
        )
        assert blank
        assert await v.page.input_value("#instruction") != "Count the cars."
        await v.shot("page-new-source-desktop")


async def test_webcam_dot_and_speech_toggle(
    server: ApiServer, feeder: Feeder, browser: Any, redis: aioredis.Redis
) -> None:
    await feeder.source("hall")
    async with viewer(browser, server.url + "/?source=hall") as v:
        # Speech: one label, the state in aria-pressed, the title says what a click does.
        speech = v.page.locator("#speech")
        assert await speech.text_content() == "Speech"
        assert await speech.get_attribute("aria-pressed") == "false"
        assert "off" in str(await speech.get_attribute("title"))
        await speech.click()
        assert await speech.get_attribute("aria-pressed") == "true"
        assert "on" in str(await speech.get_attribute("title"))
        async with httpx.AsyncClient(base_url=server.url) as http:
            async with http.stream("GET", "/api/sources/hall/audio?format=opus") as resp:
                opus = "ogg" in resp.headers.get("content-type", "")
        # Ogg/Opus from the API plays in the <audio> element; raw PCM only: in Web Audio.
        pub = SourcePublisher(redis, KEYS, "hall")
        tone = (np.sin(np.arange(9600) / 10) * 8000).astype("<i2").tobytes()

        async def heard() -> bool:
            await pub.audio(AudioChunk(source="hall", cycle="s1", seq=0, pcm=tone))
            if opus:
                return bool(await v.debug("audioElement") == "playing")
            return bool(await v.debug("audioChunks"))

        await wait_until(heard, timeout=10, interval=0.3)
        await speech.click()
        assert await speech.get_attribute("aria-pressed") == "false"
        # A webcam source has no producer process: its arriving frames make the dot green.
        v.prompt_answer = "mycam"
        await v.page.click("#webcam")
        await v.until("document.getElementById('source').value === 'mycam'", timeout=15)
        await v.until("window.lookoutDebug.producerDot === 'dot ok'", timeout=15)
        assert await redis.xlen(KEYS.frames("mycam")) >= 1
        assert await redis.sismember(KEYS.sources, "mycam")  # type: ignore[misc]
        assert not await redis.exists(KEYS.producer_status("mycam"))
        await v.shot("page-webcam-desktop")
        await v.page.click("#webcam")
