"""What the bridge needs of a LiveKit room, as one small interface.

`bridge.livekit_room.LiveKitRoom` is the real one (an `rtc.Room` on a LiveKit server);
tests/livekit_support.py has an in-process one that carries the same SDK objects (local tracks
read back through `rtc.AudioStream`/`rtc.VideoStream`, real `rtc.VideoFrame`s from a camera
track), so the bridge's logic runs unchanged where no LiveKit server can.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from livekit import rtc


class RoomError(Exception):
    """The room cannot be joined now; the message says why (unreachable, credentials...)."""


@dataclass(frozen=True)
class CameraEvent:
    """A participant's camera track arrived (`track` set) or went away (`track` None)."""

    identity: str
    track: rtc.Track | None


class BridgeRoom(Protocol):
    """One source's room, joined by the bridge's bot participant."""

    name: str
    cameras: asyncio.Queue[CameraEvent]  # remote camera tracks coming and going
    disconnected: asyncio.Event  # set when the connection is gone for good

    async def connect(self) -> None:
        """Join the room; RoomError says why not."""

    async def publish(self, track: rtc.LocalAudioTrack | rtc.LocalVideoTrack) -> None:
        """Publish the bot's microphone (speech) or camera (frames) track."""

    async def send_data(self, payload: bytes, to: list[str] | None = None) -> None:
        """Send a reliable data message on `shared.livekit_rooms.DATA_TOPIC` to everyone, or
        to the identities in `to`."""

    async def close(self) -> None:
        """Leave the room."""


RoomFactory = Callable[[str], BridgeRoom]  # room name -> a room not yet joined
