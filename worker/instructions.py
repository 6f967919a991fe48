"""Instructions outlive a Redis restart: the worker that holds a source puts back what Redis lost.

Revisions only grow (`HINCRBY`), so a state hash whose `instruction_rev` is below the newest
one this worker has seen for the source means Redis lost its data (a restart without
persistence) and the producer re-registered the source with the default instruction at rev 0.
The worker writes its instruction and revision back (only over a lower revision, atomically)
and announces it on the control channel. The worker process remembers what it saw per source
even after it lost the source's lease, so a restart that also cost it the lease still
restores. What is lost for good: an instruction that no running worker had seen.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis

from shared.bus import SourcePublisher
from shared.cluster import server_run_id
from shared.keys import Keys
from shared.messages import InstructionChanged
from shared.sources import SourceState
from worker.scheduler import SourceSlot

log = logging.getLogger(__name__)

# Write only over a lower revision, and only into a registered source's state.
_RESTORE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local rev = tonumber(redis.call('HGET', KEYS[1], 'instruction_rev') or '0') or 0
if rev >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'instruction', ARGV[1], 'instruction_rev', ARGV[2])
return 1
"""


class InstructionKeeper:
    """The newest instruction this worker saw per source, written back when Redis lost it."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._seen: dict[str, tuple[str, int]] = {}
        # Per source: the run_id of the Redis server holding its state (on a cluster, its
        # shard) when its instruction was seen.
        self._runs: dict[str, str] = {}

    async def seen(self, slot: SourceSlot) -> None:
        """Remember the slot's instruction if it is the newest seen for its source."""
        if slot.rev > self._seen.get(slot.name, ("", 0))[1]:
            self._seen[slot.name] = (slot.instruction, slot.rev)
            self._runs[slot.name] = await self._run_id(slot.name)

    async def _run_id(self, source: str) -> str:
        return await server_run_id(self._redis, self._keys.source_state(source))

    async def gone(self, source: str) -> None:
        """`source` has no state. Removed (same Redis server run): forget its instruction, so
        a new source of that name starts from its own. A restarted Redis (new run id): keep
        it, to restore once the producer registers the source again."""
        current = await self._run_id(source)
        if self._runs.get(source) in (None, current):
            self._seen.pop(source, None)
        self._runs.setdefault(source, current)

    async def restored(self, slot: SourceSlot, state: SourceState) -> bool:
        """True when `state` is older than what this worker saw (it is then written back and
        applied to `slot`); False when `state` is current and the caller should adopt it."""
        await self.seen(slot)
        instruction, rev = self._seen.get(slot.name, ("", 0))
        if state.instruction_rev >= rev:
            return False
        key = self._keys.source_state(slot.name)
        wrote = await self._redis.eval(_RESTORE, 1, key, instruction, str(rev))  # type: ignore[misc]
        self._runs[slot.name] = await self._run_id(slot.name)
        if wrote:
            log.warning("%s: Redis lost instruction rev %d; restored it", slot.name, rev)
            await SourcePublisher(self._redis, self._keys, slot.name).control(
                InstructionChanged(source=slot.name, instruction=instruction, rev=rev)
            )
        slot.apply_instruction(instruction, rev, authoritative=True)
        return True
