"""A camera published in a source's room becomes the source's producer.

The bridge reads the track (`rtc.VideoStream`, capacity 1: newest frame wins), keeps one frame
per 1/CAPTURE_FPS s, converts it to BGR and publishes it through `FramePublisher` (bounded to
MAX_FRAME_EDGE, JPEG, XADD), exactly as a producer does. It holds the source's producer claim
(`livekit BRIDGE IDENTITY`) for as long as it feeds the source, so a supervised capture, a
standalone producer, an ingest socket or a second camera is refused, and writes the producer
status hash with heartbeats (kind `livekit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import cv2
import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis
from livekit import rtc

from producers.status import StatusWriter
from shared.bus import REDIS_ERRORS
from shared.claims import INGEST_OWNER, Claims, producer_of
from shared.jpeg import JpegError, check_pixels
from shared.keys import Keys
from shared.publisher import FramePublisher, SourceRemoved
from shared.settings import Settings

log = logging.getLogger(__name__)

CAMERA_OWNER = "livekit "  # producer claims held by a bridge's camera start with this


def describe_holder(claim: str | None) -> str | None:
    """Who a producer claim's value names, in words a room participant may read (no host
    names or job ids)."""
    if claim is None:
        return None
    if claim.startswith(CAMERA_OWNER):
        return f"the LiveKit camera of {claim.rsplit(' ', 1)[-1]}"
    if claim.startswith(INGEST_OWNER):
        return "a browser's webcam"
    return "a producer supervisor"


class CameraRefused(Exception):
    """Another feeder holds the source (the 409 of the ingest socket); the message says which."""


def video_frame_to_bgr(frame: rtc.VideoFrame, max_pixels: int) -> npt.NDArray[np.uint8]:
    """A BGR image of any `rtc.VideoFrame`; JpegError if it has more than `max_pixels` (a
    participant chooses its resolution: check before converting, like an ingested JPEG)."""
    check_pixels(frame.width, frame.height, max_pixels)
    rgba = (
        frame if frame.type == rtc.VideoBufferType.RGBA else frame.convert(rtc.VideoBufferType.RGBA)
    )
    pixels = np.frombuffer(rgba.data, dtype=np.uint8).reshape(rgba.height, rgba.width, 4)
    return cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGR)  # type: ignore[return-value]


class CameraIn:
    """Feeds `source` from one participant's camera frames."""

    def __init__(
        self, redis: aioredis.Redis, settings: Settings, source: str, bridge_id: str, identity: str
    ) -> None:
        self._redis = redis
        self._settings = settings
        self.source = source
        self.identity = identity
        self.owner = f"{CAMERA_OWNER}{bridge_id} {identity}"
        self._claims = Claims(redis, Keys(settings.key_prefix), int(settings.claim_ttl * 1000))
        url = f"livekit://{identity}"
        self.status = StatusWriter(redis, settings, source, "livekit", url)
        self.publisher = FramePublisher(redis, settings, source, url=url)
        self.published = 0
        self.rejected = 0  # frames over MAX_INGEST_PIXELS
        self.lost = False  # the producer claim went to someone else
        self._last_frame = 0.0

    async def take(self) -> None:
        """Take the producer claim, or raise CameraRefused naming who feeds the source."""
        other = await producer_of(self._redis, Keys(self._settings.key_prefix), self.source)
        if other is None and await self._claims.hold(self.source, self.owner):
            return
        holder = describe_holder(await self._claims.holder(self.source)) or other
        raise CameraRefused(
            f"source {self.source!r} is already fed by {holder or 'another feeder'}"
        )

    async def run(self, frames: AsyncIterator[rtc.VideoFrame], stop: asyncio.Event) -> str:
        """Publish frames until the track ends, `stop` is set, or the claim is lost; the claim
        must have been taken. Returns why it ended; the status says `stopped` after it."""
        await self.status.set_state("live")
        self._last_frame = time.monotonic()
        publishing = asyncio.create_task(self._publish(frames))
        stopping = asyncio.create_task(stop.wait())
        keeper = asyncio.create_task(self._keep_claim(publishing))
        beats = asyncio.create_task(self.status.heartbeat(stop))
        try:
            await asyncio.wait({publishing, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if publishing.done() and not publishing.cancelled():
                return publishing.result()
            return "claim lost" if self.lost else "stopped"
        finally:
            for task in (publishing, stopping, keeper, beats):
                task.cancel()
            await asyncio.gather(publishing, stopping, keeper, beats, return_exceptions=True)
            await self.status.set_state("stopped")
            with contextlib.suppress(*REDIS_ERRORS):
                await self._claims.release(self.source, self.owner)

    async def _publish(self, frames: AsyncIterator[rtc.VideoFrame]) -> str:
        period = 1.0 / self._settings.capture_fps
        next_due = 0.0
        async for frame in frames:
            now = time.monotonic()
            if now < next_due:
                continue
            next_due = max(next_due + period, now)
            try:
                image = await asyncio.to_thread(
                    video_frame_to_bgr, frame, self._settings.ingest_pixel_limit
                )
                record = await self.publisher.publish_image(image)
            except JpegError as exc:
                self.rejected += 1
                log.warning("%s: camera frame of %s refused: %s", self.source, self.identity, exc)
                continue
            except SourceRemoved:
                return "source removed"
            except REDIS_ERRORS as exc:
                log.warning("%s: camera frame not published: %s", self.source, exc)
                continue
            self.published += 1
            self._last_frame = time.monotonic()
            self.status.frame(record.ts)
            if self.status.state != "live":
                await self.status.set_state("live")
        return "track ended"

    async def _keep_claim(self, publishing: asyncio.Task[str]) -> None:
        """Renew the claim (stopping the camera when it is lost) and mark a stalled camera."""
        stall = self._settings.stall_timeout
        while True:
            await asyncio.sleep(self._settings.claim_ttl / 3)
            try:
                if not await self._claims.renew(self.source, self.owner):
                    log.warning(
                        "%s: producer claim lost; camera of %s stops", self.source, self.identity
                    )
                    self.lost = True
                    publishing.cancel()
                    return
                quiet = time.monotonic() - self._last_frame
                if quiet > stall and self.status.state == "live":
                    await self.status.set_state("reconnecting", error=f"no frame for {quiet:.0f} s")
            except REDIS_ERRORS as exc:
                log.warning("%s: producer claim not renewed: %s", self.source, exc)


async def frames_of(stream: rtc.VideoStream) -> AsyncIterator[rtc.VideoFrame]:
    """The frames of a LiveKit video stream (its owner closes it)."""
    async for event in stream:
        yield event.frame
