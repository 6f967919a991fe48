"""Leases: which worker comments on which source, at most one at a time.

A lease is `Keys.lease(source)` = worker id, set with NX and a TTL of LEASE_TTL. Its owner
renews it every LEASE_TTL/3 with a compare-and-renew script (only if the value is still its
own id), so a worker that died or lost Redis for longer than LEASE_TTL loses its sources and
another worker takes them within about LEASE_TTL + LEASE_TTL/3.

Sharing: each worker aims at ceil(sources / live workers) leases (live: a heartbeat whose
`beat_ts` is younger than LEASE_TTL), capped at MAX_SOURCES_PER_WORKER. A worker above its
share releases a lease it is not using, so a second worker started later gets some.
"""

from __future__ import annotations

import math
import random
import time

import redis.asyncio as aioredis

from shared.cluster import is_cluster
from shared.keys import Keys
from shared.record_fields import RecordError
from shared.status_records import WorkerBeat

# Renew (PEXPIRE) only if the lease still names us; 1 if renewed, 0 if lost.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# Delete only our own lease; 1 if deleted.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Leases:
    """Acquire, renew and release source leases for one worker id."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, worker_id: str, ttl: float) -> None:
        self._redis = redis
        self.on_cluster = is_cluster(redis)
        self._keys = keys
        self.worker_id = worker_id
        self.ttl = ttl
        self._ttl_ms = int(ttl * 1000)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    async def acquire(self, source: str) -> bool:
        """Take the lease of `source` if nobody holds it."""
        ok = await self._redis.set(
            self._keys.lease(source), self.worker_id, nx=True, px=self._ttl_ms
        )
        return bool(ok)

    async def renew(self, source: str) -> bool:
        """Extend our lease; False when it expired or another worker holds it now."""
        result = await self._renew(
            keys=[self._keys.lease(source)], args=[self.worker_id, self._ttl_ms]
        )
        return bool(result)

    async def release(self, source: str) -> bool:
        """Give the lease back (only if it is still ours)."""
        result = await self._release(keys=[self._keys.lease(source)], args=[self.worker_id])
        return bool(result)

    async def live_workers(self) -> int:
        """Workers whose heartbeat is younger than one lease TTL."""
        return await live_workers(self._redis, self._keys, self.ttl)

    async def live_beats(self) -> list[WorkerBeat]:
        """The heartbeats of the workers younger than one lease TTL."""
        return await live_beats(self._redis, self._keys, self.ttl)

    async def holder(self, source: str) -> str | None:
        """The id of the worker holding `source`, if any."""
        value = await self._redis.get(self._keys.lease(source))
        return value.decode() if isinstance(value, bytes) else value


async def live_workers(redis: aioredis.Redis, keys: Keys, max_age: float) -> int:
    """Workers whose heartbeat is younger than `max_age` seconds (at least 1: ourselves)."""
    return max(len(await live_beats(redis, keys, max_age)), 1)


async def live_beats(redis: aioredis.Redis, keys: Keys, max_age: float) -> list[WorkerBeat]:
    """The heartbeats younger than `max_age` seconds."""
    beats = []
    now = time.time()
    async for key in redis.scan_iter(match=keys.worker_pattern, count=100):
        try:
            beat = WorkerBeat.from_fields(await redis.hgetall(key))  # type: ignore[misc]
        except RecordError:  # a hand-edited hash is no live worker
            continue
        if beat.beat_ts and now - beat.beat_ts <= max_age:
            beats.append(beat)
    return beats


def fair_share(sources: int, workers: int, cap: int) -> int:
    """How many sources one of `workers` should hold."""
    return min(cap, math.ceil(sources / max(workers, 1)))


def acquisition_order(candidates: list[str]) -> list[str]:
    """Shuffled, so two workers starting together do not race for the same sources first."""
    order = list(candidates)
    random.shuffle(order)
    return order
