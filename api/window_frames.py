"""One frame of a source by its sequence number, while the frames stream still holds it.

A commentary names the frames it described (`frame_seqs`, `frame_ts`); frames live only as
long as the trimmed frames stream keeps them (about FRAMES_MAXLEN entries, ~30 s), so an
older one answers 404 saying so. With the frame's capture time (`ts`) the lookup reads only a
few entries around it: stream ids are XADD times, a little after capture.
"""

from __future__ import annotations

import math

from api.errors import FieldError, NotFound
from api.services import Service
from shared.record_fields import RecordError, as_text
from shared.records import FrameRecord

PAGE = 16  # entries read per XRANGE (each holds a JPEG)
TS_SLACK_S = 2.0  # capture-to-XADD delay and clock skew between producer and Redis hosts
TS_MATCH_S = 0.001  # a restarted producer reuses seqs: the capture time (µs) tells them apart
MAX_SEQ = 2**62


class WindowFrames(Service):
    """Frames of a source by sequence number, for one request."""

    async def frame(self, name: str, seq: int, ts: float | None) -> FrameRecord:
        """The frame `seq` of `name` (captured at `ts`, if given); 404 once it was trimmed."""
        await self.require(name)
        if not 0 <= seq <= MAX_SEQ:
            raise FieldError("seq", f"expected 0..{MAX_SEQ}")
        if ts is not None and not (math.isfinite(ts) and 0 < ts < 1e11):
            raise FieldError("ts", "expected the frame's capture time in epoch seconds")
        found = await self._walk(name, seq, ts)
        if found is None:
            raise NotFound(
                detail=f"frame {seq} of {name!r} is no longer retained (the frames stream "
                f"keeps about FRAMES_MAXLEN={self.settings.frames_maxlen} frames)"
            )
        return found

    async def _walk(self, name: str, seq: int, ts: float | None) -> FrameRecord | None:
        """Page forward from just before `ts` (or the oldest entry) until found or past it."""
        stream = self.keys.frames(name)
        start = "-" if ts is None else str(max(0, int((ts - TS_SLACK_S) * 1000)))
        stop_ms = math.inf if ts is None else (ts + TS_SLACK_S) * 1000
        for _ in range(self.settings.frames_maxlen // PAGE + 2):  # bounded: the stream is
            entries = await self.redis.xrange(stream, start, "+", count=PAGE)
            for entry_id, fields in entries:
                if int(as_text(entry_id).split("-")[0]) > stop_ms:
                    return None
                try:
                    record = FrameRecord.from_fields(fields)
                except RecordError:
                    continue
                if record.seq == seq and (ts is None or abs(record.ts - ts) < TS_MATCH_S):
                    return record
            if len(entries) < PAGE:
                return None
            start = f"({as_text(entries[-1][0])}"
        return None
