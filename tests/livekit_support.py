"""An in-process LiveKit room for the bridge's tests (no tests here).

No LiveKit server can run on these machines, so `InProcessRoom` stands where a server would
be, carrying the SDK's own objects: the bridge publishes real `rtc.LocalAudioTrack`s and
`rtc.LocalVideoTrack`s, which a test reads back with real `rtc.AudioStream`/`rtc.VideoStream`
(the SDK's native media path, in this process); a test's camera is a real `rtc.VideoSource`
whose track the bridge subscribes to. Only the network between them is missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from livekit import rtc

from bridge.room import BridgeRoom, CameraEvent, RoomError
from shared.messages import PCM_RATE


@dataclass(frozen=True)
class DataMessage:
    payload: bytes
    to: list[str] | None


class InProcessRoom:
    """A `BridgeRoom` whose published tracks and data stay in this process."""

    def __init__(self, name: str, fail: str | None = None) -> None:
        self.name = name
        self.cameras: asyncio.Queue[CameraEvent] = asyncio.Queue()
        self.disconnected = asyncio.Event()
        self.data: asyncio.Queue[DataMessage] = asyncio.Queue()
        self.tracks: dict[str, rtc.LocalAudioTrack | rtc.LocalVideoTrack] = {}
        self.published = asyncio.Event()
        self.joined = asyncio.Event()
        self.closed = asyncio.Event()
        self.fail = fail
        self.joins = 0
        self._camera_sources: list[rtc.VideoSource] = []

    async def connect(self) -> None:
        self.joins += 1
        if self.fail is not None:
            raise RoomError(self.fail)
        self.joined.set()

    async def publish(self, track: rtc.LocalAudioTrack | rtc.LocalVideoTrack) -> None:
        self.tracks[track.name] = track
        if len(self.tracks) == 2:
            self.published.set()

    async def send_data(self, payload: bytes, to: list[str] | None = None) -> None:
        self.data.put_nowait(DataMessage(payload, to))

    async def close(self) -> None:
        self.closed.set()

    # --- what a test does as another participant ---
    def audio_stream(self) -> rtc.AudioStream:
        """The bridge's speech as a subscriber would hear it."""
        track = next(t for t in self.tracks.values() if isinstance(t, rtc.LocalAudioTrack))
        return rtc.AudioStream(track, sample_rate=PCM_RATE, num_channels=1)

    def video_stream(self) -> rtc.VideoStream:
        """The bridge's video as a subscriber would see it (RGBA frames)."""
        track = next(t for t in self.tracks.values() if isinstance(t, rtc.LocalVideoTrack))
        return rtc.VideoStream(track, format=rtc.VideoBufferType.RGBA)

    def add_camera(self, identity: str, width: int = 640, height: int = 360) -> rtc.VideoSource:
        """Publish a camera as participant `identity`; feed it with `capture_frame`."""
        source = rtc.VideoSource(width, height)
        track = rtc.LocalVideoTrack.create_video_track(f"camera-{identity}", source)
        self._camera_sources.append(source)
        self.cameras.put_nowait(CameraEvent(identity, track))
        return source

    def remove_camera(self, identity: str) -> None:
        self.cameras.put_nowait(CameraEvent(identity, None))


class InProcessRooms:
    """A room factory for `Bridge`: one `InProcessRoom` per join, the latest kept by name."""

    def __init__(self, make: Callable[[str], BridgeRoom] | None = None) -> None:
        self.rooms: dict[str, InProcessRoom] = {}
        self.failing: dict[str, str] = {}  # room name -> RoomError message
        self._make = make

    def __call__(self, name: str) -> BridgeRoom:
        room = self._make(name) if self._make is not None else InProcessRoom(name)
        if isinstance(room, InProcessRoom):
            room.fail = self.failing.get(name, room.fail)
            self.rooms[name] = room
        return room


def rgba_frame(image_bgr: np.ndarray) -> rtc.VideoFrame:
    """An RGBA `rtc.VideoFrame` of a BGR image."""
    import cv2

    rgba = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGBA)
    height, width = rgba.shape[:2]
    return rtc.VideoFrame(width, height, rtc.VideoBufferType.RGBA, rgba.tobytes())
