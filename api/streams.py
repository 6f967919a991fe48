"""The three live streams a viewer can open: SSE events, MJPEG video and raw PCM speech.

SSE follows the standard: named events (`chunk`, `cycle`, `commentary`, `notice`,
`reconnected`, `gap`), `retry:`, a keep-alive comment, and ids on commentary-level events that are
history stream ids, so `Last-Event-ID` resumes with an exclusive XRANGE and a reconnecting
browser misses no commentary. Text chunks carry no id (they are the fast path).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import msgspec

from api.history import history_item
from api.state import AppState
from shared.bus import REDIS_ERRORS
from shared.messages import (
    PCM_RATE,
    AlertEvent,
    AudioChunk,
    CycleEnded,
    CycleEvent,
    SourceNotice,
    TextChunk,
)

log = logging.getLogger(__name__)

RESUME_MAX = 200  # most commentaries sent to a resuming client
MJPEG_BOUNDARY = "lookoutframe"
SSE_KINDS: tuple[type, ...] = (TextChunk, CycleEvent, SourceNotice, AlertEvent)

_json = msgspec.json.Encoder()


class Gap(msgspec.Struct, frozen=True):
    """SSE `gap`: a resume skipped `skipped` commentaries older than history id `before`."""

    source: str
    skipped: int
    before: str  # page the skipped ones with GET /api/sources/NAME/history?before=<before>


def sse(event: str, data: object, event_id: str | None = None) -> bytes:
    """One SSE event; `data` is JSON-encoded on one line."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: ".encode() + _json.encode(data) + b"\n\n"


def newer(a: str, b: str | None) -> bool:
    """Whether stream id `a` comes after `b` (None: nothing seen yet)."""
    if b is None:
        return True
    ams, _, aseq = a.partition("-")
    bms, _, bseq = b.partition("-")
    return (int(ams), int(aseq or 0)) > (int(bms), int(bseq or 0))


class EventStream:
    """The SSE stream of one viewer of one source."""

    def __init__(self, state: AppState, source: str, last_event_id: str | None) -> None:
        self.state = state
        self.source = source
        self.last_id = last_event_id

    async def _replay(self) -> AsyncIterator[bytes]:
        """History after `last_id` (exclusive), or the newest SSE_REPLAY on a fresh connect."""
        stream = self.state.keys.history(self.source)
        try:
            if self.last_id is None:
                newest = await self.state.redis.xrevrange(
                    stream, count=self.state.settings.sse_replay
                )
                entries = list(reversed(newest))
            else:
                newest = await self.state.redis.xrevrange(
                    stream, "+", f"({self.last_id}", count=RESUME_MAX
                )
                entries = list(reversed(newest))
                gap = await self._gap(stream, entries)
                if gap is not None:
                    yield sse("gap", gap)
        except REDIS_ERRORS as exc:
            log.warning("history replay of %s failed: %s", self.source, exc)
            return
        for entry_id, fields in entries:
            item = history_item(entry_id, fields)
            if item is not None:
                self.last_id = item.id
                yield sse("commentary", item, item.id)

    async def _gap(self, stream: str, entries: list[tuple[bytes, object]]) -> Gap | None:
        """What a resume past RESUME_MAX skips: between `Last-Event-ID` and the oldest replayed.

        The replay sends the newest RESUME_MAX commentaries; the skipped ones stay in the
        history, readable with `/history?before=<before>` (newest first).
        """
        if len(entries) < RESUME_MAX:
            return None
        before = entries[0][0].decode() if isinstance(entries[0][0], bytes) else str(entries[0][0])
        skipped = await self.state.redis.xrange(
            stream, f"({self.last_id}", f"({before}", count=self.state.settings.history_maxlen
        )
        if not skipped:
            return None
        return Gap(source=self.source, skipped=len(skipped), before=before)

    def _event(self, message: object) -> bytes | None:
        if isinstance(message, TextChunk):
            return sse("chunk", message)
        if isinstance(message, CycleEnded):
            hid = message.history_id
            if hid:
                if not newer(hid, self.last_id):
                    return None  # already sent by the replay
                self.last_id = hid
            return sse("cycle", message, hid or None)
        if isinstance(message, CycleEvent):
            return sse("cycle", message)
        if isinstance(message, SourceNotice):
            return sse("notice", message)
        if isinstance(message, AlertEvent):  # a watch rule fired or cleared
            return sse("alert", message)
        return None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        settings = self.state.settings
        yield f"retry: {settings.sse_retry_ms}\n\n".encode()
        async with self.state.hub.viewer(self.source, SSE_KINDS, "sse") as viewer:
            # Subscribed before reading history: nothing falls between the two.
            async for event in self._replay():
                yield event
            yield b": ready\n\n"  # live from here on (tests and tools wait for it)
            while True:
                try:
                    item = await asyncio.wait_for(viewer.queue.get(), settings.sse_keepalive)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if not isinstance(item, SSE_KINDS):
                    yield sse("reconnected", {"source": self.source})
                    async for event in self._replay():
                        yield event
                    continue
                data = self._event(item)
                if data is not None:
                    yield data


async def mjpeg_stream(state: AppState, source: str) -> AsyncIterator[bytes]:
    """multipart/x-mixed-replace parts of the newest frames, at most DISPLAY_FPS."""
    settings = state.settings
    async with state.frames.viewer(source) as frames:
        async for frame in frames.paced(settings.display_fps, settings.sse_keepalive):
            if frame is None:
                continue  # no frame for a while: nothing to send, the part boundary waits
            yield (
                (
                    f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                    f"Content-Length: {len(frame.jpeg)}\r\nX-Frame-Seq: {frame.seq}\r\n"
                    f"X-Frame-Ts: {frame.ts:.3f}\r\n\r\n"
                ).encode()
                + frame.jpeg
                + b"\r\n"
            )


async def audio_stream(state: AppState, source: str) -> AsyncIterator[bytes]:
    """The raw 48 kHz mono s16le PCM of the source's speech, chunk after chunk."""
    # Speech comes in bursts faster than real time: allow a deeper queue than text.
    depth = state.settings.viewer_queue * 4
    async with state.hub.viewer(source, (AudioChunk,), "audio", depth) as viewer:
        carry = b""
        while True:
            item = await viewer.queue.get()
            if not isinstance(item, AudioChunk):
                continue
            if item.sample_rate != PCM_RATE:
                log.warning("dropped a %d Hz audio chunk of %s", item.sample_rate, source)
                continue
            data = carry + item.pcm
            # Keep the byte stream sample-aligned even if a chunk had an odd length.
            cut = len(data) - len(data) % 2
            carry = data[cut:]
            if cut:
                yield data[:cut]
