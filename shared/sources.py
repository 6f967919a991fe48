"""The source registry and per-source state in Redis, shared by producers, worker and API.

A source is registered (member of `Keys.sources`, state hash created) by whoever first
publishes frames for it or by the API when a user adds it. Its instruction lives in the state
hash with a revision number; changing it publishes `InstructionChanged` on the source's
control channel so the worker hears it at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from shared.bus import SourcePublisher
from shared.cluster import transaction
from shared.keys import Keys, validate_source_name
from shared.messages import InstructionChanged, SourceNotice


@dataclass(frozen=True)
class SourceState:
    """What the state hash of a source holds."""

    name: str
    url: str
    instruction: str
    instruction_rev: int
    created_at: float


def _text(raw: dict[bytes, bytes], field: str, default: str = "") -> str:
    value = raw.get(field.encode())
    return value.decode() if value is not None else default


class SourceRegistry:
    """Reads and writes the registry and state of sources."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, default_instruction: str) -> None:
        self._redis = redis
        self._keys = keys
        self._default_instruction = default_instruction

    async def register(self, name: str, url: str = "") -> bool:
        """Add `name` if new (keeping an existing instruction); True if it was new."""
        validate_source_name(name)
        key = self._keys.source_state(name)
        async with transaction(self._redis) as pipe:
            pipe.sadd(self._keys.sources, name)
            pipe.hsetnx(key, "instruction", self._default_instruction)
            pipe.hsetnx(key, "instruction_rev", "0")
            pipe.hsetnx(key, "created_at", f"{time.time():.3f}")
            if url:
                pipe.hset(key, "url", url)
            added, *_ = await pipe.execute()
        if added:
            await SourcePublisher(self._redis, self._keys, name).event(
                SourceNotice(source=name, what="registered", detail=url)
            )
        return bool(added)

    async def remove(self, name: str) -> bool:
        """Forget `name` and its state, frames and lease; keep its history. True if it existed."""
        async with transaction(self._redis) as pipe:
            pipe.srem(self._keys.sources, name)
            pipe.delete(
                self._keys.source_state(name), self._keys.frames(name), self._keys.lease(name)
            )
            removed, *_ = await pipe.execute()
        if removed:
            await SourcePublisher(self._redis, self._keys, name).event(
                SourceNotice(source=name, what="removed")
            )
        return bool(removed)

    async def names(self) -> list[str]:
        """Registered source names, sorted."""
        members = await self._redis.smembers(self._keys.sources)  # type: ignore[misc]
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    async def exists(self, name: str) -> bool:
        return bool(await self._redis.sismember(self._keys.sources, name))  # type: ignore[misc]

    async def state(self, name: str) -> SourceState | None:
        """The state of `name`, or None if it is not registered."""
        if not await self.exists(name):
            return None
        raw = await self._redis.hgetall(self._keys.source_state(name))  # type: ignore[misc]
        return SourceState(
            name=name,
            url=_text(raw, "url"),
            instruction=_text(raw, "instruction", self._default_instruction),
            instruction_rev=int(_text(raw, "instruction_rev", "0") or 0),
            created_at=float(_text(raw, "created_at", "0") or 0),
        )

    async def set_instruction(self, name: str, instruction: str) -> int:
        """Store a new instruction, bump its revision, tell the worker; returns the revision."""
        key = self._keys.source_state(name)
        async with transaction(self._redis) as pipe:
            pipe.hset(key, "instruction", instruction)
            pipe.hincrby(key, "instruction_rev", 1)
            _, rev = await pipe.execute()
        await SourcePublisher(self._redis, self._keys, name).control(
            InstructionChanged(source=name, instruction=instruction, rev=int(rev))
        )
        return int(rev)
