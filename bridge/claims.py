"""Which bridge serves a source's room: `Keys.livekit_claim(source)`, TTL CLAIM_TTL.

Like the supervisors' producer claims (shared/claims.py), but on their own key: a bridge
serving a room and a producer feeding the source are different jobs. Any number of bridges
run; each takes free rooms up to LIVEKIT_MAX_ROOMS and renews its claims; a dead bridge's
claims lapse and another takes its rooms over within CLAIM_TTL.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from shared.keys import Keys

# Take a free claim or renew our own (one script: two bridges never both win).
_HOLD = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RoomClaims:
    """Atomic take, renew and release of room claims for one bridge."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, owner: str, ttl_ms: int) -> None:
        self._redis = redis
        self._keys = keys
        self.owner = owner
        self._ttl = str(ttl_ms)

    async def hold(self, source: str) -> bool:
        """Take the room of `source` if free, or renew ours; False while another bridge has it."""
        key = self._keys.livekit_claim(source)
        return bool(await self._redis.eval(_HOLD, 1, key, self.owner, self._ttl))  # type: ignore[misc]

    async def release(self, source: str) -> None:
        key = self._keys.livekit_claim(source)
        await self._redis.eval(_RELEASE, 1, key, self.owner)  # type: ignore[misc]

    async def holder(self, source: str) -> str | None:
        value = await self._redis.get(self._keys.livekit_claim(source))
        return value.decode() if isinstance(value, bytes) else value
