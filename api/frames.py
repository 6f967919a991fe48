"""Fan-out of a source's JPEG frames to the MJPEG viewers on this API process.

One reader per source per process blocks on XREAD of the frames stream and keeps only the
newest frame; viewers are woken through their own event. A viewer that is still sending an
older frame simply misses the ones in between (latest wins), so it never holds up the
reader or another viewer, and each viewer is paced to at most DISPLAY_FPS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from api.metrics import ApiMetrics
from shared.backoff import Backoff
from shared.bus import REDIS_ERRORS
from shared.keys import Keys
from shared.record_fields import RecordError
from shared.records import FrameRecord

log = logging.getLogger(__name__)

XREAD_BLOCK_MS = 1000


@dataclass(eq=False)
class FrameViewer:
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    seen: int = 0


class ViewerFrames:
    """Frames of one source for its HTTP viewers (the XREAD loop); `version` counts frames read."""

    def __init__(self, source: str, redis: aioredis.Redis, keys: Keys, metrics: ApiMetrics) -> None:
        self.source = source
        self._redis = redis
        self._stream = keys.frames(source)
        self._metrics = metrics
        self.viewers: set[FrameViewer] = set()
        self.latest: FrameRecord | None = None
        self.version = 0
        self.task = asyncio.create_task(self._run(), name=f"frames-{source}")

    def _publish(self, frame: FrameRecord) -> None:
        self.latest = frame
        self.version += 1
        for viewer in self.viewers:
            viewer.wake.set()

    async def _run(self) -> None:
        last_id = "$"
        backoff = Backoff(0.1, 5.0)
        while True:
            try:
                if self.latest is None:
                    # Start from the newest frame so a new viewer sees a picture at once.
                    newest = await self._redis.xrevrange(self._stream, count=1)
                    if newest:
                        last_id = newest[0][0].decode()
                        self._decode_and_publish(newest[0][1])
                reply = await self._redis.xread(
                    {self._stream: last_id}, count=50, block=XREAD_BLOCK_MS
                )
                backoff.reset()
            except REDIS_ERRORS as exc:
                self._metrics.reconnects.inc()
                log.warning("frame reader of %s lost Redis (%s); retrying", self.source, exc)
                await asyncio.sleep(backoff.next())
                continue
            if not reply:
                continue
            entries = reply[0][1]
            last_id = entries[-1][0].decode()
            # Only the newest matters to viewers; older ones in the batch are already late.
            self._decode_and_publish(entries[-1][1])

    def _decode_and_publish(self, fields: dict[bytes, bytes]) -> None:
        try:
            self._publish(FrameRecord.from_fields(fields))
        except RecordError as exc:
            log.warning("skipped a bad frame entry of %s: %s", self.source, exc)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class FrameHub:
    """Per-process registry of frame readers, created on the first viewer of a source."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, metrics: ApiMetrics) -> None:
        self._redis = redis
        self._keys = keys
        self._metrics = metrics
        self._readers: dict[str, ViewerFrames] = {}

    def viewer_count(self, source: str | None = None) -> int:
        readers = self._readers.values() if source is None else [self._readers.get(source)]
        return sum(len(r.viewers) for r in readers if r is not None)

    @contextlib.asynccontextmanager
    async def viewer(self, source: str) -> AsyncIterator[FrameStream]:
        """A paced stream of the newest frames of `source`, until the block ends."""
        reader = self._readers.get(source)
        if reader is None:
            reader = self._readers[source] = ViewerFrames(
                source, self._redis, self._keys, self._metrics
            )
        viewer = FrameViewer()
        reader.viewers.add(viewer)
        self._metrics.viewers.labels("mjpeg").inc()
        try:
            yield FrameStream(reader, viewer, self._metrics)
        finally:
            reader.viewers.discard(viewer)
            self._metrics.viewers.labels("mjpeg").dec()
            if not reader.viewers and self._readers.get(source) is reader:
                del self._readers[source]
                await reader.stop()

    async def close(self) -> None:
        readers, self._readers = list(self._readers.values()), {}
        for reader in readers:
            await reader.stop()


class FrameStream:
    """What one viewer iterates: the newest frame each time, never faster than `max_fps`."""

    def __init__(self, reader: ViewerFrames, viewer: FrameViewer, metrics: ApiMetrics) -> None:
        self._reader = reader
        self._viewer = viewer
        self._metrics = metrics

    async def paced(self, max_fps: float, idle: float) -> AsyncIterator[FrameRecord | None]:
        """Frames at most `max_fps` per second; None after each `idle` s without one."""
        loop = asyncio.get_running_loop()
        interval = 1.0 / max_fps
        due = loop.time()
        while True:
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            frame = await self.next(idle)
            due = loop.time() + (interval if frame is not None else 0.0)
            yield frame

    async def next(self, idle: float) -> FrameRecord | None:
        """The next frame newer than the last one returned; None after `idle` s without."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while self._reader.version <= self._viewer.seen or self._reader.latest is None:
            self._viewer.wake.clear()
            remaining = idle - (loop.time() - started)
            if remaining <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._viewer.wake.wait(), remaining)
        skipped = self._reader.version - self._viewer.seen - 1
        if self._viewer.seen and skipped > 0:
            self._metrics.dropped.labels("mjpeg").inc(skipped)
        self._viewer.seen = self._reader.version
        self._metrics.frames.inc()
        return self._reader.latest
