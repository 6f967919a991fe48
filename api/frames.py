"""Fan-out of a source's JPEG frames to the MJPEG viewers on this API process.

One reader per source per process blocks on XREAD of the frames stream, builds the newest
frame's multipart part once and hands that same bytes object to every viewer, which sends it
at once (no pacing clock: frames leave as they arrive, at the producer's DISPLAY_FPS). A
viewer that is still sending an older part keeps only the newest pending one (latest wins),
so it never holds up the reader or another viewer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from api.hub import Viewer
from api.metrics import ApiMetrics
from shared.backoff import Backoff
from shared.bus import REDIS_ERRORS
from shared.keys import Keys
from shared.record_fields import RecordError
from shared.records import FrameRecord

log = logging.getLogger(__name__)

XREAD_BLOCK_MS = 1000
MJPEG_BOUNDARY = "lookoutframe"


def mjpeg_part(frame: FrameRecord) -> bytes:
    """One multipart/x-mixed-replace part: headers, the JPEG, CRLF."""
    head = (
        f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
        f"Content-Length: {len(frame.jpeg)}\r\nX-Frame-Seq: {frame.seq}\r\n"
        f"X-Frame-Ts: {frame.ts:.3f}\r\n\r\n"
    ).encode()
    return b"".join((head, frame.jpeg, b"\r\n"))


class ViewerFrames:
    """Frames of one source for its HTTP viewers (the XREAD loop); `version` counts frames read."""

    def __init__(self, source: str, redis: aioredis.Redis, keys: Keys, metrics: ApiMetrics) -> None:
        self.source = source
        self._redis = redis
        self._stream = keys.frames(source)
        self._metrics = metrics
        self.viewers: set[Viewer] = set()
        self.latest: bytes | None = None  # the newest frame's part
        self.task = asyncio.create_task(self._run(), name=f"frames-{source}")

    def _publish(self, frame: FrameRecord) -> None:
        part = self.latest = mjpeg_part(frame)
        delivered = dropped = 0
        for viewer in self.viewers:
            if viewer.offer(part):
                delivered += 1
            else:
                dropped += 1  # it was still sending: the frame it had pending is skipped
        if delivered:
            self._metrics.frames.inc(delivered)
        if dropped:
            self._metrics.dropped.labels("mjpeg").inc(dropped)

    async def _run(self) -> None:
        last_id = "0-0"  # an empty stream: its first frame is new (with "$" a race could skip it)
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
    async def viewer(self, source: str) -> AsyncIterator[Viewer]:
        """A viewer of the newest frame parts of `source` (the current one first)."""
        reader = self._readers.get(source)
        if reader is None:
            reader = self._readers[source] = ViewerFrames(
                source, self._redis, self._keys, self._metrics
            )
        viewer = Viewer(limit=1, latest=True)
        if reader.latest is not None:
            viewer.offer(reader.latest)
        reader.viewers.add(viewer)
        self._metrics.viewers.labels("mjpeg").inc()
        try:
            yield viewer
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
