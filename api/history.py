"""History of a source: past commentaries, newest first, paged with `before`, searched with
`q`, `since` and `until` (api/history_search.py), and each one's snapshot."""

from __future__ import annotations

from api.errors import FieldError, NotFound
from api.history_search import STREAM_ID_RE, HistorySearch, Range, is_history_id, query_terms
from api.schemas import HistoryItem, HistoryOut
from api.services import Service
from shared.record_fields import RecordError, as_text
from shared.records import CommentaryRecord

__all__ = ["STREAM_ID_RE", "HistoryService", "history_item"]


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
        frame_seqs=record.frame_seqs,
        frame_ts=record.frame_ts,
        snapshot=record.snapshot,
    )


class HistoryService(Service):
    """The history stream of a source, for one request."""

    async def history(
        self,
        name: str,
        limit: int,
        before: str | None,
        q: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> HistoryOut:
        """Newest `limit` commentaries (newest first) older than id `before`, captured
        between `since` and `until`, holding every word of `q` when given."""
        await self.require(name)
        bounds = Range.of(before, since, until)
        key = self.keys.history(name)
        if q is not None:
            entries, more = await HistorySearch(self.redis).run(key, bounds, query_terms(q), limit)
        else:
            entries = await self.redis.xrevrange(key, bounds.top, bounds.bottom, count=limit)
            more = as_text(entries[-1][0]) if len(entries) == limit else None
        items = [history_item(i, f) for i, f in entries]
        return HistoryOut(name, [i for i in items if i is not None], more)

    async def snapshot(self, name: str, history_id: str) -> bytes:
        """The JPEG kept with history entry `history_id`; 404 once the entry is trimmed."""
        await self.require(name)
        if not is_history_id(history_id):
            raise FieldError("history_id", "expected a history id like 1700000000000-0")
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xrange(self.keys.history(name), history_id, history_id, count=1)
            pipe.xrange(self.keys.snapshots(name), history_id, history_id, count=1)
            entry, snapshot = await pipe.execute()
        jpeg = snapshot[0][1].get(b"jpeg") if entry and snapshot else None
        if not jpeg:
            raise NotFound(detail=f"no snapshot for history entry {history_id} of {name!r}")
        return bytes(jpeg)
