"""Helpers for the API tests (no tests here): a real `lookout api` process, an SSE reader,
real JPEGs and writers of the bus contract, so tests need no worker or producer."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import httpx
import numpy as np
import redis.asyncio as aioredis

from shared.bus import SourcePublisher
from shared.keys import Keys
from shared.messages import CycleFinished, CycleStarted, TextChunk
from shared.records import CommentaryRecord, FrameRecord
from tests.helpers import LookoutProcess, free_port, wait_for_port


class ApiServer:
    """`python -m lookout api --port N` as a subprocess, stopped by `stop()`."""

    def __init__(self, env: Mapping[str, str], name: str = "api") -> None:
        self.port = free_port()
        self.proc = LookoutProcess(["api", "--port", str(self.port)], env, name)
        try:
            wait_for_port(self.port, timeout=30)
        except TimeoutError:
            self.proc.stop()
            raise RuntimeError(f"api did not start:\n{self.proc.log()}") from None
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.stop()


def make_jpeg(seed: int = 0, width: int = 320, height: int = 180, quality: int = 80) -> bytes:
    """A real, non-blank JPEG (a colour gradient with a moving square)."""
    x = np.linspace(0, 255, width, dtype=np.uint8)
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, :, 0] = x
    image[:, :, 1] = ((x[::-1].astype(np.int32) // 2 + seed * 13) % 256).astype(np.uint8)
    image[:, :, 2] = 90
    left = (seed * 17) % max(1, width - 40)
    image[60:100, left : left + 40] = (255, 255, 255)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return bytes(buf)


async def add_frame(redis: aioredis.Redis, keys: Keys, source: str, seq: int, jpeg: bytes) -> None:
    record = FrameRecord(seq=seq, ts=time.time(), width=320, height=180, jpeg=jpeg)
    await redis.xadd(keys.frames(source), record.to_fields(), maxlen=300, approximate=True)  # type: ignore[arg-type]


async def add_history(
    redis: aioredis.Redis, keys: Keys, source: str, text: str, cycle: str = "c"
) -> str:
    record = CommentaryRecord(cycle=cycle, status="finished", text=text, instruction="i")
    entry_id = await redis.xadd(keys.history(source), record.to_fields())  # type: ignore[arg-type]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


async def say(redis: aioredis.Redis, keys: Keys, source: str, cycle: str, words: list[str]) -> str:
    """Publish a commentary as the worker does: chunks, history entry, finished event."""
    pub = SourcePublisher(redis, keys, source)
    await pub.event(CycleStarted(source=source, cycle=cycle))
    for seq, word in enumerate(words):
        await pub.text(TextChunk(source=source, cycle=cycle, seq=seq, text=word))
    text = "".join(words)
    history_id = await add_history(redis, keys, source, text, cycle)
    await pub.event(CycleFinished(source=source, cycle=cycle, text=text, history_id=history_id))
    return history_id


@dataclass
class SseEvent:
    event: str
    data: Any
    id: str | None = None


@dataclass
class SseReader:
    """Parses an SSE response line by line; keeps comments and the retry value seen."""

    lines: AsyncIterator[str]
    comments: list[str] = field(default_factory=list)
    retry: int | None = None

    @classmethod
    def of(cls, response: httpx.Response) -> SseReader:
        return cls(response.aiter_lines())

    async def _read(self) -> SseEvent | str:
        """The next event, or the next comment line."""
        name, event_id = "message", None
        data: list[str] = []
        async for line in self.lines:
            if line == "":
                if data:
                    return SseEvent(name, json.loads("\n".join(data)), event_id)
                continue
            if line.startswith(":"):
                self.comments.append(line)
                return line
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "event":
                name = value
            elif key == "data":
                data.append(value)
            elif key == "id":
                event_id = value
            elif key == "retry":
                self.retry = int(value)
        raise EOFError("stream ended")

    async def next(self, timeout: float = 5.0) -> SseEvent:  # noqa: ASYNC109
        """The next event (comments are kept in `comments`)."""
        async with asyncio.timeout(timeout):
            while True:
                got = await self._read()
                if isinstance(got, SseEvent):
                    return got

    async def ready(self, timeout: float = 5.0) -> list[SseEvent]:  # noqa: ASYNC109
        """Events up to the `: ready` comment (the replay); the stream is live after it."""
        events: list[SseEvent] = []
        async with asyncio.timeout(timeout):
            while True:
                got = await self._read()
                if isinstance(got, SseEvent):
                    events.append(got)
                elif got == ": ready":
                    return events

    async def until(self, event: str, timeout: float = 5.0) -> SseEvent:  # noqa: ASYNC109
        """Skip events until one named `event`."""
        async with asyncio.timeout(timeout):
            while True:
                found = await self.next(timeout)
                if found.event == event:
                    return found


async def subscribed(redis: aioredis.Redis, channel: str, count: int = 1) -> None:
    """Wait until `count` clients subscribe to `channel` (PUBSUB NUMSUB), before publishing."""

    async def enough() -> bool:
        return int((await redis.pubsub_numsub(channel))[0][1]) >= count

    await wait_until(enough, timeout=10)


async def wait_until(check: Any, timeout: float = 5.0, interval: float = 0.05) -> Any:  # noqa: ASYNC109
    """Poll the async callable `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
