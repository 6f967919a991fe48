"""Frames sent by a browser over a WebSocket (the page's "use my webcam").

Each binary message is one JPEG. A bad or oversize frame is answered with a JSON error and
the socket stays open; a good one is published like a producer's frame and acknowledged
with its sequence number, so the client can pace itself.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import WebSocket
from litestar.exceptions import WebSocketDisconnect

from api.state import AppState
from shared.bus import REDIS_ERRORS
from shared.keys import SourceNameError, validate_source_name

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013


async def ingest_frames(socket: WebSocket[Any, Any, Any], state: AppState, name: str) -> None:
    """Publish every JPEG received on `socket` as a frame of source `name`."""
    await socket.accept()
    try:
        validate_source_name(name)
        from producers.publisher import FramePublisher  # loads OpenCV: only when used
        from shared.jpeg import JpegError
    except SourceNameError as exc:
        await socket.send_json({"error": str(exc), "field": "name"})
        await socket.close(POLICY_VIOLATION)
        return
    except ImportError as exc:
        await socket.send_json({"error": f"frame ingest is not available: {exc}"})
        await socket.close(TRY_AGAIN_LATER)
        return
    publisher = FramePublisher(state.redis, state.settings, name, url="websocket")
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
            record = await publisher.publish_jpeg(data)
        except JpegError as exc:
            await socket.send_json({"error": str(exc)})
            continue
        except REDIS_ERRORS as exc:
            log.warning("ingest of %s could not publish: %s", name, exc)
            await socket.send_json({"error": "Redis is unavailable; frame dropped"})
            continue
        state.metrics.ingested.inc()
        await socket.send_json({"seq": record.seq})
