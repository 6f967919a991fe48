"""A source's frames to a LiveKit video track: JPEG → `rtc.VideoFrame` at DISPLAY_FPS.

Each tick reads only the newest entry of the frames stream (XREVRANGE COUNT 1), so a slow
room never makes frames queue up: whatever came in between is skipped, newest wins.
`rtc.VideoSource.capture_frame` hands the frame to the SDK without waiting either.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import cv2
import numpy as np
import redis.asyncio as aioredis
from livekit import rtc

from bridge.audio import Clock, MonotonicClock
from shared.bus import REDIS_ERRORS
from shared.jpeg import JpegError, decode_jpeg
from shared.keys import Keys
from shared.record_fields import RecordError
from shared.records import FrameRecord
from shared.settings import Settings

log = logging.getLogger(__name__)


def jpeg_to_video_frame(jpeg: bytes, settings: Settings) -> rtc.VideoFrame:
    """The RGBA `rtc.VideoFrame` of a JPEG from the frames stream (checked like any JPEG:
    markers, size, pixel count; raises JpegError). CPU-bound: call it off the event loop."""
    image = decode_jpeg(jpeg, settings.max_frame_bytes, max_pixels=settings.ingest_pixel_limit)
    rgba = cv2.cvtColor(image, cv2.COLOR_BGR2RGBA)
    height, width = rgba.shape[:2]
    return rtc.VideoFrame(width, height, rtc.VideoBufferType.RGBA, np.ascontiguousarray(rgba).data)


class VideoPump:
    """Sends the newest frame of `source` to `sink` every 1/DISPLAY_FPS s, if it is new."""

    def __init__(
        self,
        redis: aioredis.Redis,
        settings: Settings,
        source: str,
        sink: Callable[[rtc.VideoFrame], None],
        clock: Clock | None = None,
    ) -> None:
        self._redis = redis
        self._settings = settings
        self._stream = Keys(settings.key_prefix).frames(source)
        self._sink = sink
        self._clock = clock or MonotonicClock()
        self.source = source
        self.last_seq = 0
        self.sent = 0
        self.skipped = 0  # frames that came and went between two ticks
        self.bad = 0  # entries that were not a valid frame

    async def tick(self) -> bool:
        """Send the newest frame if it is newer than the last sent; True if one was sent."""
        entries = await self._redis.xrevrange(self._stream, count=1)
        if not entries:
            return False
        try:
            record = FrameRecord.from_fields(entries[0][1])
        except RecordError as exc:
            self.bad += 1
            log.warning("%s: bad frame entry: %s", self.source, exc)
            return False
        if record.seq == self.last_seq:
            return False
        if self.last_seq and record.seq > self.last_seq + 1:
            self.skipped += record.seq - self.last_seq - 1
        self.last_seq = record.seq
        try:
            frame = await asyncio.to_thread(jpeg_to_video_frame, record.jpeg, self._settings)
        except JpegError as exc:
            self.bad += 1
            log.warning("%s: frame %d not sent: %s", self.source, record.seq, exc)
            return False
        self._sink(frame)
        self.sent += 1
        return True

    async def run(self, stop: asyncio.Event) -> None:
        period = 1.0 / self._settings.display_fps
        start, count = self._clock.now(), 0
        while not stop.is_set():
            try:
                await self.tick()
            except REDIS_ERRORS as exc:
                log.warning("%s: frames not read: %s", self.source, exc)
            count += 1
            due = start + count * period
            if self._clock.now() > due:  # behind: next tick from now, no catching up
                start, count = self._clock.now(), 0
                due = start
            await self._clock.sleep(max(0.0, due - self._clock.now()))
