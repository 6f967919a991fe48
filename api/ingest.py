"""Frames sent by a browser over a WebSocket (the page's "use my webcam").

Each binary message is one JPEG. A bad or oversize frame is answered with a JSON error and
the socket stays open; a good one is published like a producer's frame and acknowledged
with its sequence number, so the client can pace itself.

The socket holds a claim on its source like any producer (shared/claims.py), renewed while
frames come: a name that a supervisor or producer captures, or another socket feeds, is
refused with `{"error": ..., "status": 409}` and close code 4409, and a supervisor cannot take
the name while the socket holds it. Frames of two feeders never interleave.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from litestar import WebSocket
from litestar.exceptions import WebSocketDisconnect

from api.state import AppState
from shared.bus import REDIS_ERRORS
from shared.claims import INGEST_OWNER, producer_of
from shared.keys import SourceNameError, validate_source_name

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
CONFLICT = 4409  # 4000 + HTTP 409, the convention for application close codes
GONE = 4410  # the source was deleted through the API


class SourceTaken(Exception):
    """Another feeder holds the source (HTTP 409)."""


class IngestClaim:
    """The claim one ingest socket holds on its source."""

    def __init__(self, state: AppState, name: str) -> None:
        self.state = state
        self.name = name
        self.owner = f"{INGEST_OWNER}{uuid.uuid4().hex[:12]}"
        self._renew_every = state.settings.claim_ttl / 3
        self._renewed = 0.0

    async def take(self) -> None:
        """Claim the source; SourceTaken says who feeds it instead."""
        other = await producer_of(self.state.redis, self.state.keys, self.name)
        if other is None and await self.keep():
            # A new feeder wants the name: a DELETE before it no longer applies.
            await self.state.redis.delete(self.state.keys.removed(self.name))
            return
        if other is None:
            holder = await self.state.claims.holder(self.name) or ""
            other = "another ingest socket" if holder.startswith(INGEST_OWNER) else "a producer"
        raise SourceTaken(f"source {self.name!r} is captured by {other}: pick another name")

    async def keep(self) -> bool:
        """Renew the claim when a third of its TTL has passed; False once it is lost."""
        now = time.monotonic()
        if now - self._renewed < self._renew_every:
            return True
        if not await self.state.claims.hold(self.name, self.owner):
            return False
        self._renewed = now
        return True

    async def release(self) -> None:
        try:
            await self.state.claims.release(self.name, self.owner)
        except REDIS_ERRORS as exc:
            log.warning("ingest claim on %s not released (it expires): %s", self.name, exc)


async def _close(socket: WebSocket[Any, Any, Any], error: str, status: int, code: int) -> None:
    await socket.send_json({"error": error, "status": status})
    await socket.close(code)


async def ingest_frames(socket: WebSocket[Any, Any, Any], state: AppState, name: str) -> None:
    """Publish every JPEG received on `socket` as a frame of source `name`."""
    await socket.accept()
    try:
        validate_source_name(name)
    except SourceNameError as exc:
        await socket.send_json({"error": str(exc), "status": 422, "field": "name"})
        await socket.close(POLICY_VIOLATION)
        return
    claim = IngestClaim(state, name)
    try:
        await claim.take()
    except SourceTaken as exc:
        await _close(socket, str(exc), 409, CONFLICT)
        return
    except REDIS_ERRORS:
        await _close(socket, "Redis is unavailable; try again later", 503, TRY_AGAIN_LATER)
        return
    try:
        await _receive(socket, state, claim)
    finally:
        await claim.release()


async def _receive(socket: WebSocket[Any, Any, Any], state: AppState, claim: IngestClaim) -> None:
    from shared.jpeg import JpegError
    from shared.publisher import FramePublisher, SourceRemoved  # loads OpenCV: only when used

    publisher = FramePublisher(state.redis, state.settings, claim.name, url="websocket")
    limit = state.settings.max_frame_bytes
    while True:
        try:
            message = await socket.receive()
        except WebSocketDisconnect:
            return
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if not isinstance(data, bytes):
            await socket.send_json({"error": "send each frame as one binary JPEG message"})
            continue
        if len(data) > limit:
            await socket.send_json({"error": f"frame of {len(data)} bytes exceeds {limit}"})
            continue
        try:
            if not await claim.keep():
                await _close(socket, f"source {claim.name!r} was taken over", 409, CONFLICT)
                return
            record = await publisher.publish_jpeg(data)
        except JpegError as exc:
            await socket.send_json({"error": str(exc)})
            continue
        except SourceRemoved as exc:
            await _close(socket, str(exc), 410, GONE)
            return
        except REDIS_ERRORS as exc:
            log.warning("ingest of %s could not publish: %s", claim.name, exc)
            await socket.send_json({"error": "Redis is unavailable; frame dropped"})
            continue
        state.metrics.ingested.inc()
        await socket.send_json({"seq": record.seq})
