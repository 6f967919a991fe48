"""Helpers for the worker tests: synthetic scenes, a frame feeder, an event recorder."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
import redis.asyncio as aioredis

from shared.bus import REDIS_ERRORS, Subscription
from shared.jpeg import encode_jpeg
from shared.keys import Keys
from shared.messages import AnyMessage, CycleEvent, TextChunk
from shared.records import FrameRecord
from shared.settings import Settings
from shared.settings_env import load_settings
from tests.scripted_engine import ScriptedEngine
from worker.service import run_worker

FAST = {
    "CAPTURE_FPS": "5",
    "FRAMES_PER_INFERENCE": "2",
    "FRAME_STRIDE": "1",
    "INFERENCE_INTERVAL": "0.2",
    "LEASE_TTL": "1.5",
    "HEARTBEAT_TTL": "3",
    "CHANGE_THRESHOLD": "5",
}


def fast_settings(test_env: dict[str, str], **overrides: str) -> Settings:
    """Settings for quick cycles on the test's Redis and key prefix."""
    return load_settings({**test_env, **FAST, **overrides}, env_file=None)


def scene(kind: int, moving: int = 0, width: int = 160, height: int = 90) -> bytes:
    """A small JPEG: `kind` picks colours and shapes, `moving` shifts a small square."""
    rng = np.random.default_rng(kind)
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = rng.integers(0, 255, 3, dtype=np.uint8)
    for _ in range(4):
        x, y = int(rng.integers(0, 120)), int(rng.integers(0, 60))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(image, (x, y), (x + 30, y + 25), colour, -1)
    cv2.rectangle(image, (moving % 150, 5), (moving % 150 + 8, 13), (255, 255, 255), -1)
    return encode_jpeg(image, 85)


@dataclass
class Feeder:
    """Publishes frames of one source at `fps` like a producer; `jpeg` can change mid-run."""

    redis: aioredis.Redis
    keys: Keys
    source: str
    jpeg: bytes
    fps: float = 10.0
    seq: int = 0

    async def publish(self, jpeg: bytes | None = None) -> None:
        record = FrameRecord(self.seq, time.time(), 160, 90, jpeg or self.jpeg)
        self.seq += 1
        await self.redis.xadd(
            self.keys.frames(self.source),
            record.to_fields(),  # type: ignore[arg-type]
            maxlen=300,
            approximate=True,
        )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(*REDIS_ERRORS):
                await self.publish()
            await asyncio.sleep(1 / self.fps)


@dataclass
class Recorder:
    """Collects every message of some sources' text and events channels, with arrival time."""

    url: str
    keys: Keys
    sources: list[str]
    messages: list[tuple[float, AnyMessage]] = field(default_factory=list)

    async def run(self) -> None:
        channels = [self.keys.events_channel(s) for s in self.sources]
        channels += [self.keys.text_channel(s) for s in self.sources]
        self.sub = Subscription(self.url, channels)
        async for _, message in self.sub.messages():
            self.messages.append((time.time(), message))

    def events(self, source: str | None = None, name: str | None = None) -> list[CycleEvent]:
        return [
            m
            for _, m in self.messages
            if isinstance(m, CycleEvent)
            and (source is None or m.source == source)
            and (name is None or m.event == name)
        ]

    def chunks(self, cycle: str) -> list[TextChunk]:
        return [m for _, m in self.messages if isinstance(m, TextChunk) and m.cycle == cycle]

    async def wait(self, check: Callable[[], bool], within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"condition not met in {within}s; saw {len(self.messages)} messages"
                )
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def background(*coroutines: object) -> AsyncIterator[None]:
    """Run coroutines as tasks for the block, then cancel them."""
    tasks = [asyncio.create_task(c) for c in coroutines]  # type: ignore[arg-type]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def worker(
    settings: Settings, engine: ScriptedEngine, worker_id: str = "w1"
) -> AsyncIterator[asyncio.Task[None]]:
    """An in-process worker; stopped cleanly (stop flag) at the end of the block."""
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_worker(settings, engine, stop=stop, worker_id=worker_id, grace=1.0)
    )
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 15)


async def subscribed(recorder: Recorder) -> None:
    """Wait until the recorder's subscription is live (pub/sub drops earlier messages)."""
    for _ in range(200):
        if hasattr(recorder, "sub") and recorder.sub.connected.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("recorder did not subscribe")


async def until(
    check: Callable[[], object], within: float = 15.0, what: str = "the condition"
) -> float:
    """Poll `check` (plain or async) until it holds; the seconds it took. AssertionError naming
    `what` after `within` seconds."""
    start = time.monotonic()
    while not await _holds(check):
        if time.monotonic() - start > within:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def _holds(check: Callable[[], object]) -> bool:
    result = check()
    return bool(await result if inspect.isawaitable(result) else result)
