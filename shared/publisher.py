"""Publishes frames of one source to its Redis stream, the same way for every kind of input.

Producers hand over decoded images; the API hands over JPEGs a browser sent. Either way the
frame is bounded to MAX_FRAME_EDGE, stamped with a per-source increasing sequence number and
a monotonic capture time, and XADDed as a `FrameRecord` to `Keys.frames(source)`.
"""

from __future__ import annotations

import asyncio
import time

import cv2
import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis

from shared.jpeg import decode_jpeg, encode_jpeg
from shared.keys import Keys
from shared.record_fields import RecordError
from shared.records import FrameRecord
from shared.settings import Settings
from shared.sources import SourceRegistry

Image = npt.NDArray[np.uint8]
# Registration is repeated this often: a Redis restarted without persistence may come back
# empty without any command failing (redis-py reconnects by itself), and a source missing from
# the registry gets no commentary. Registering again is idempotent (SADD, HSETNX).
REGISTER_REFRESH_S = 2.0


class SourceRemoved(Exception):
    """The source was deleted through the API (`Keys.removed`): stop feeding it."""


def bound_image(image: Image, max_edge: int) -> Image:
    """`image` shrunk (never enlarged) so its longest edge is at most `max_edge`."""
    height, width = image.shape[:2]
    longest = max(height, width)
    if longest <= max_edge:
        return image
    scale = max_edge / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)  # type: ignore[return-value]


def encode_frame(image: Image, max_edge: int, quality: int) -> tuple[bytes, int, int]:
    """Resize and JPEG-encode; returns (jpeg, width, height). CPU-bound: call it off the loop."""
    bounded = bound_image(image, max_edge)
    return encode_jpeg(bounded, quality), int(bounded.shape[1]), int(bounded.shape[0])


class FramePublisher:
    """XADDs frames of `source`; registers the source on the first frame.

    Sequence numbers continue from the stream's newest entry, so they keep increasing across
    producer restarts; timestamps are forced to increase even if the wall clock steps back.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        settings: Settings,
        source: str,
        *,
        url: str = "",
        max_edge: int | None = None,
        quality: int | None = None,
    ) -> None:
        self._redis = redis
        self._settings = settings
        self._keys = Keys(settings.key_prefix)
        self.source = source
        self.url = url
        self.max_edge = max_edge or settings.max_frame_edge
        self.quality = quality or settings.jpeg_quality
        self._seq: int | None = None
        self._registered = False
        self._registered_at = 0.0
        self._last_ts = 0.0
        self._lock = asyncio.Lock()

    async def publish_image(self, image_bgr: Image, ts: float | None = None) -> FrameRecord:
        """Resize, encode and publish a BGR image captured at `ts` (default: now)."""
        ts = time.time() if ts is None else ts
        jpeg, width, height = await asyncio.to_thread(
            encode_frame, image_bgr, self.max_edge, self.quality
        )
        return await self.publish_encoded(jpeg, width, height, ts)

    async def publish_jpeg(self, data: bytes, ts: float | None = None) -> FrameRecord:
        """Validate and publish a JPEG from outside (raises shared.jpeg.JpegError).

        Its header is checked against MAX_FRAME_BYTES and MAX_INGEST_PIXELS before decoding.
        The bytes are stored as sent unless the picture exceeds MAX_FRAME_EDGE, in which case
        it is decoded reduced and re-encoded smaller.
        """
        ts = time.time() if ts is None else ts
        image = await asyncio.to_thread(self._decode, data)
        height, width = image.shape[:2]
        if max(height, width) > self.max_edge:
            return await self.publish_image(image, ts)
        return await self.publish_encoded(data, int(width), int(height), ts)

    def _decode(self, data: bytes) -> Image:
        return decode_jpeg(
            data,
            self._settings.max_frame_bytes,
            max_pixels=self._settings.ingest_pixel_limit,
            max_edge=self.max_edge,
        )

    async def publish_encoded(self, jpeg: bytes, width: int, height: int, ts: float) -> FrameRecord:
        """XADD an already bounded and encoded frame (producers encode in their reader thread)."""
        async with self._lock:  # seq and ts must be assigned and added in order
            if not self._registered or time.monotonic() - self._registered_at > REGISTER_REFRESH_S:
                await self._register()
            assert self._seq is not None
            self._seq += 1
            # Capture times are monotonic per source even if NTP steps the clock back.
            self._last_ts = max(ts, self._last_ts + 1e-6)
            record = FrameRecord(self._seq, self._last_ts, width, height, jpeg)
            await self._redis.xadd(
                self._keys.frames(self.source),
                record.to_fields(),  # type: ignore[arg-type]
                maxlen=self._settings.frames_maxlen,
                approximate=True,
            )
        return record

    @property
    def last_seq(self) -> int:
        """Sequence number of the newest published frame (0 before the first)."""
        return self._seq or 0

    def reregister(self) -> None:
        """Register the source again with the next frame (after Redis lost its data)."""
        self._registered = False

    async def _register(self) -> None:
        if await self._redis.exists(self._keys.removed(self.source)):
            # Frames sent since the DELETE (at most REGISTER_REFRESH_S of them) go too.
            await self._redis.delete(self._keys.frames(self.source))
            raise SourceRemoved(f"source {self.source!r} was removed through the API")
        registry = SourceRegistry(self._redis, self._keys, self._settings.default_instruction)
        await registry.register(self.source, self.url)
        if self._seq is None:
            self._seq, self._last_ts = await last_frame_position(
                self._redis, self._keys, self.source
            )
        self._registered = True
        self._registered_at = time.monotonic()


async def last_frame_position(redis: aioredis.Redis, keys: Keys, source: str) -> tuple[int, float]:
    """(seq, ts) of the newest frame in the stream of `source`, or (0, 0.0) if none is readable."""
    entries = await redis.xrevrange(keys.frames(source), count=1)
    if not entries:
        return 0, 0.0
    try:
        record = FrameRecord.from_fields(entries[0][1])
    except RecordError:
        return 0, 0.0
    return record.seq, record.ts
