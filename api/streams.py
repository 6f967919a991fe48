"""The live streams a viewer can open: SSE events and MJPEG video (speech: api/audio.py).

SSE follows the standard: named events (`chunk`, `cycle`, `commentary`, `notice`,
`reconnected`, `gap`), `retry:`, a keep-alive comment, and ids on commentary-level events that are
history stream ids, so `Last-Event-ID` resumes with an exclusive XRANGE and a reconnecting
browser misses no commentary. Text chunks carry no id (they are the fast path).

Each live message is encoded once per process (api/sse.py) and the same bytes go to every
viewer; each MJPEG part is built once per frame (api/frames.py). A viewer's writer sends
everything pending in one write (see api/hub.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import msgspec

from api.history import history_item
from api.hub import KEEPALIVE, RECONNECTED
from api.live import LiveBody, Write
from api.sse import SseEvent, sse
from shared.bus import REDIS_ERRORS

if TYPE_CHECKING:
    from api.state import AppState  # the state builds the taps of this module

log = logging.getLogger(__name__)

RESUME_MAX = 200  # most commentaries sent to a resuming client
KEEPALIVE_COMMENT = b": keep-alive\n\n"


class Gap(msgspec.Struct, frozen=True):
    """SSE `gap`: a resume skipped `skipped` commentaries older than history id `before`."""

    source: str
    skipped: int
    before: str  # page the skipped ones with GET /api/sources/NAME/history?before=<before>


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

    def body(self) -> LiveBody:
        return LiveBody(self.run)

    async def run(self, write: Write) -> None:
        settings = self.state.settings
        await write(f"retry: {settings.sse_retry_ms}\n\n".encode())
        async with self.state.hub.viewer(self.source, "sse") as viewer:
            # Subscribed before reading history: nothing falls between the two.
            replay = [event async for event in self._replay()]
            await write(b"".join([*replay, b": ready\n\n"]))  # live from here on
            while True:
                items = await viewer.take()
                first = items[0]
                if len(items) == 1 and type(first) is SseEvent and not first.history_id:
                    await write(first.data)  # the common case: one live chunk
                    continue
                out: list[bytes] = []
                for item in items:
                    if isinstance(item, SseEvent):
                        if self._fresh(item):
                            out.append(item.data)
                    elif item is KEEPALIVE:
                        out.append(KEEPALIVE_COMMENT)
                    elif item is RECONNECTED:
                        out.append(sse("reconnected", {"source": self.source}))
                        out.extend([event async for event in self._replay()])
                if out:
                    await write(out[0] if len(out) == 1 else b"".join(out))

    def _fresh(self, event: SseEvent) -> bool:
        """False for a cycle end the replay already sent; remembers the newest history id."""
        hid = event.history_id
        if not hid:
            return True
        if not newer(hid, self.last_id):
            return False
        self.last_id = hid
        return True

    async def _replay(self) -> AsyncIterator[bytes]:
        """History after `last_id` (exclusive), or the newest SSE_REPLAY on a fresh connect."""
        stream = self.state.keys.history(self.source)
        try:
            if self.last_id is None:
                count = self.state.settings.sse_replay
                newest = await self.state.redis.xrevrange(stream, count=count) if count else []
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


def mjpeg_body(state: AppState, source: str) -> LiveBody:
    """multipart/x-mixed-replace parts of the newest frames, each sent as soon as it is read.

    A viewer still sending an older part skips the frames in between (latest wins).
    """

    async def run(write: Write) -> None:
        async with state.frames.viewer(source) as viewer:
            while True:
                parts = await viewer.take()
                await write(parts[-1])

    return LiveBody(run)
