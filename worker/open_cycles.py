"""The commentary cycle in progress on a source, kept in Redis so a crash cannot leave it open.

While a worker comments on a source, `Keys.open_cycle(source)` holds a `CommentaryRecord`
with status `open` and the text streamed so far. A cycle that ends deletes it. A worker that
dies mid-cycle (kill -9, a lost host) leaves it behind; the next worker to comment on the
source — another one taking over the lease, or the same one restarted — finds it before its
own first cycle and closes it: an `interrupted` event (CycleInterrupted) (with the text streamed so far)
for viewers, and a history record with status `lost`. Only commentary is tracked: answers to
asks are arq jobs, which arq runs again after a crash.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import redis.asyncio as aioredis

from shared.bus import SourcePublisher
from shared.cluster import transaction
from shared.keys import Keys
from shared.messages import CycleInterrupted
from shared.record_fields import RecordError
from shared.records import CommentaryRecord
from shared.settings import Settings

log = logging.getLogger(__name__)

OPEN_CYCLE_TTL_S = 24 * 3600  # a source nobody comments on again does not keep it forever


class OpenCycles:
    """Writes, updates and closes the open-cycle record of the sources one worker serves."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, settings: Settings) -> None:
        self._redis = redis
        self._keys = keys
        self._settings = settings

    async def begin(self, source: str, record: CommentaryRecord) -> None:
        """Record `record` (status `open`) as the cycle now running on `source`."""
        key = self._keys.open_cycle(source)
        async with transaction(self._redis) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=replace(record, status="open").to_fields())
            pipe.expire(key, OPEN_CYCLE_TTL_S)
            await pipe.execute()

    async def progress(self, source: str, text: str) -> None:
        """The text streamed so far (what a crash would otherwise lose)."""
        await self._redis.hset(self._keys.open_cycle(source), "text", text)  # type: ignore[misc]

    async def end(self, source: str, cycle: str) -> None:
        """Forget the open cycle of `source` if it is still `cycle`."""
        key = self._keys.open_cycle(source)
        current = await self._redis.hget(key, "cycle")  # type: ignore[misc]
        if current is not None and current.decode() == cycle:
            await self._redis.delete(key)

    async def close_orphan(self, source: str) -> CommentaryRecord | None:
        """Close a cycle a dead worker left open on `source`; returns it (status `lost`)."""
        key = self._keys.open_cycle(source)
        raw = await self._redis.hgetall(key)  # type: ignore[misc]
        if not raw:
            return None
        await self._redis.delete(key)
        try:
            left = CommentaryRecord.from_fields(raw)
        except RecordError as exc:
            log.warning("%s: dropped an unreadable open cycle: %s", source, exc)
            return None
        lost = replace(left, status="lost", text=left.text.strip())
        raw_id = await self._redis.xadd(
            self._keys.history(source),
            lost.to_fields(),  # type: ignore[arg-type]
            maxlen=self._settings.history_maxlen,
            approximate=True,
        )
        history_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        await SourcePublisher(self._redis, self._keys, source).event(
            CycleInterrupted(
                source=source,
                cycle=lost.cycle,
                worker=lost.worker,
                kind="commentary",
                text=lost.text,
                tokens=len(lost.text.split()),
                history_id=history_id,
            )
        )
        log.warning("%s: closed cycle %s left open by %s (lost)", source, lost.cycle, lost.worker)
        return lost
