"""History of a source: past commentaries, newest first, paged with `before`."""

from __future__ import annotations

import re

from api.errors import FieldError
from api.schemas import HistoryItem, HistoryOut
from api.services import Service
from shared.records import CommentaryRecord, RecordError, as_text

STREAM_ID_RE = re.compile(r"^\d{1,20}-\d{1,20}$")


def history_item(entry_id: bytes | str, fields: dict[bytes, bytes]) -> HistoryItem | None:
    """One history stream entry as a response item; None if the entry is malformed."""
    try:
        record = CommentaryRecord.from_fields(fields)
    except RecordError:
        return None
    return HistoryItem(
        id=as_text(entry_id),
        cycle=record.cycle,
        status=record.status,
        kind=record.kind,
        text=record.text,
        instruction=record.instruction,
        worker=record.worker,
        started_at=record.started_at,
        duration_ms=record.duration_ms,
        latency_ms=record.latency_ms,
        tokens=record.tokens,
        question=record.question,
        job_id=record.job_id,
    )


class HistoryService(Service):
    """The history stream of a source, for one request."""

    async def history(self, name: str, limit: int, before: str | None) -> HistoryOut:
        """Newest `limit` commentaries (newest first), optionally older than id `before`."""
        await self.require(name)
        if before is not None and not STREAM_ID_RE.fullmatch(before):
            raise FieldError("before", "expected a history id like 1700000000000-0")
        top = f"({before}" if before else "+"
        entries = await self.redis.xrevrange(self.keys.history(name), top, "-", count=limit)
        items = [history_item(i, f) for i, f in entries]
        return HistoryOut(name, [i for i in items if i is not None])
