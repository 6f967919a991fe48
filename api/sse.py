"""SSE encoding, once per message for every viewer of a process (the `sse` tap of api/hub.py)."""

from __future__ import annotations

import msgspec

from shared.messages import (
    AlertEvent,
    AnyMessage,
    CycleEnded,
    CycleEvent,
    SourceNotice,
    TextChunk,
)

_json = msgspec.json.Encoder()


def sse(event: str, data: object, event_id: str | None = None) -> bytes:
    """One SSE event; `data` is JSON-encoded on one line."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: ".encode() + _json.encode(data) + b"\n\n"


class SseEvent(msgspec.Struct, frozen=True, gc=False):
    """A live message as every SSE viewer gets it: encoded once, shared by all of them.

    `history_id` is set on cycle ends, which a viewer skips when its replay already sent it.
    """

    data: bytes
    history_id: str = ""


class SseTap:
    """The SSE encoding of a relay's messages (see api/hub.py `Tap`)."""

    keepalive = True

    def convert(self, message: AnyMessage) -> SseEvent | None:
        if isinstance(message, TextChunk):
            return SseEvent(sse("chunk", message))
        if isinstance(message, CycleEnded):
            hid = message.history_id
            return SseEvent(sse("cycle", message, hid or None), hid)
        if isinstance(message, CycleEvent):
            return SseEvent(sse("cycle", message))
        if isinstance(message, SourceNotice):
            return SseEvent(sse("notice", message))
        if isinstance(message, AlertEvent):  # a watch rule fired or cleared
            return SseEvent(sse("alert", message))
        return None
