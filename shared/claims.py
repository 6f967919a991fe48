"""Claims: which process feeds a source's frames (`Keys.producer_claim`, TTL CLAIM_TTL).

The value is `SUPERVISOR-ID JOB-ID` while a supervisor captures it, `pending JOB-ID` while a
capture job waits in the queue, or `ingest ID` while a browser sends frames through the API's
ingest WebSocket. Every change is one Lua script, so two holders never both win. Producers use
this module and so does the API, which imports no producer code.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from shared.keys import Keys

# Take the claim if nobody holds it or it only marks a queued job.
_TAKE = """
local v = redis.call('GET', KEYS[1])
if (not v) or string.sub(v, 1, 8) == 'pending ' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1
end
return 0
"""
# Take a free claim or renew our own; never take a pending one (a capture job is queued).
_HOLD = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_REPLACE_FIELD = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) return 1
end
return 0
"""


class Claims:
    """Atomic operations on the claims of sources and on the desired-sources hash."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, ttl_ms: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = str(ttl_ms)

    async def _eval(self, script: str, key: str, *args: str) -> int:
        return int(await self._redis.eval(script, 1, key, *args))  # type: ignore[misc]

    async def take(self, name: str, owner: str) -> bool:
        """Claim `name` for `owner` unless a live capture holds it."""
        return bool(await self._eval(_TAKE, self._keys.producer_claim(name), owner, self._ttl))

    async def hold(self, name: str, owner: str) -> bool:
        """Claim a free `name` or renew `owner`'s claim; False while anyone else holds it."""
        return bool(await self._eval(_HOLD, self._keys.producer_claim(name), owner, self._ttl))

    async def holder(self, name: str) -> str | None:
        """Who claims `name` now (`SUPERVISOR JOB`, `pending JOB`, `ingest ID`), or None."""
        value = await self._redis.get(self._keys.producer_claim(name))
        return value.decode() if isinstance(value, bytes) else value

    async def renew(self, name: str, owner: str) -> bool:
        """Extend the claim; False if `owner` no longer holds it."""
        return bool(await self._eval(_RENEW, self._keys.producer_claim(name), owner, self._ttl))

    async def release(self, name: str, owner: str) -> None:
        await self._eval(_RELEASE, self._keys.producer_claim(name), owner)

    async def mark_pending(self, name: str, job_id: str, ttl_ms: int) -> bool:
        """Mark `name` as having a queued job, unless it is claimed or marked already."""
        key = self._keys.producer_claim(name)
        return bool(await self._redis.set(key, f"pending {job_id}", nx=True, px=ttl_ms))

    async def replace_desired(self, name: str, old: bytes, new: bytes) -> bool:
        """Swap the desired entry of `name` if it is still exactly `old`."""
        key = self._keys.producer_desired
        return bool(await self._eval(_REPLACE_FIELD, key, name, old.decode(), new.decode()))


INGEST_OWNER = "ingest "  # claim values of the API's ingest sockets start with this
# A producer's status hash (producers/status.py) in one of these states is capturing.
ACTIVE_PRODUCER_STATES = (b"connecting", b"live", b"reconnecting")


async def producer_of(redis: aioredis.Redis, keys: Keys, name: str) -> str | None:
    """What captures `name` apart from claims: a supervised source or a live standalone
    producer (which holds no claim); None when neither does."""
    if await redis.hexists(keys.producer_desired, name):  # type: ignore[misc]
        return "a producer supervisor"
    state = await redis.hget(keys.producer_status(name), "state")  # type: ignore[misc]
    if state in ACTIVE_PRODUCER_STATES:
        return "a producer"
    return None
