"""Keeps this worker's leases: renews them, takes its share of free sources, hands extras back.

Every LEASE_TTL/3: renew each held lease (compare-and-renew); take free registered sources
up to the fair share (leases.fair_share); above the share, release one source that is not
being commented right now. A lease whose renewal has not succeeded for 0.8 LEASE_TTL (Redis
unreachable) is dropped locally before it can expire in Redis, so this worker has stopped
commenting before another one can take the source: never two at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

from shared.bus import REDIS_ERRORS
from shared.sources import SourceRegistry
from worker.leases import Leases, acquisition_order, fair_share
from worker.scheduler import Scheduler, SourceSlot

log = logging.getLogger(__name__)

SAFETY = 0.8  # share of LEASE_TTL after which an unrenewed lease is given up locally


class Holder(Protocol):
    """What the keeper needs from its worker."""

    scheduler: Scheduler
    registry: SourceRegistry
    model_id: str  # the model it serves: sources requiring another one are not for it

    @property
    def serving(self) -> list[SourceSlot]: ...  # the sources whose cycles run now

    async def required_models(self) -> dict[str, str]: ...
    def gain(self, source: str) -> None: ...
    def lose(self, source: str, reason: str) -> None: ...


class LeaseKeeper:
    """The lease loop of one worker."""

    def __init__(self, holder: Holder, leases: Leases, max_sources: int) -> None:
        self._holder = holder
        self._leases = leases
        self._ttl = leases.ttl
        self._cap = max_sources
        self._renewed: dict[str, float] = {}  # source -> monotonic time its renewal was sent
        self.paused = False  # a model switch: hold nothing, take nothing

    @property
    def held(self) -> list[str]:
        return list(self._holder.scheduler.slots)

    async def run(self, stop: asyncio.Event) -> None:
        """Keep leases until `stop`; Redis outages are waited out."""
        while not stop.is_set():
            try:
                await self.round()
            except REDIS_ERRORS as exc:
                log.warning("lease round failed: %s", exc)
            self._expire_local()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._ttl / 3)

    async def round(self) -> None:
        """One renew / take / hand-back pass."""
        await self._renew_held()
        names = await self._holder.registry.names()
        for source in set(self.held) - set(names):
            await self.drop(source, "source removed")
        required = await self._holder.required_models()
        mine = self._holder.model_id
        for source in self.held:
            if required.get(source, mine) != mine:
                await self.drop(source, f"requires model {required[source]}")
        if self.paused:
            return
        eligible = [n for n in names if required.get(n, mine) == mine]
        share = await self._share(eligible, required)
        if len(self.held) > share:
            await self._hand_back_one()
            return
        for source in acquisition_order([n for n in eligible if n not in self.held]):
            if len(self.held) >= share:
                break
            sent = time.monotonic()
            if await self._leases.acquire(source):
                self._renewed[source] = sent
                self._holder.gain(source)

    async def _renew_held(self) -> None:
        if not self._leases.on_cluster:
            for source in self.held:
                await self._renew(source)
            return
        # On a cluster the leases live on the shards of their sources: one shard down must not
        # keep the leases on the others from being renewed (together: one timeout at most).
        held = self.held
        results = await asyncio.gather(*(self._renew(s) for s in held), return_exceptions=True)
        for source, result in zip(held, results, strict=True):
            if isinstance(result, REDIS_ERRORS):
                log.warning("lease of %s not renewed: %s", source, result)
            elif isinstance(result, BaseException):
                raise result

    async def _renew(self, source: str) -> None:
        sent = time.monotonic()
        if await self._leases.renew(source):
            self._renewed[source] = sent
        else:
            self._forget(source, "lease taken or expired")

    async def _share(self, eligible: list[str], required: dict[str, str]) -> int:
        """Our fair share: of the sources requiring our model among the live workers serving
        it, plus of the sources requiring none among all live workers."""
        beats = await self._leases.live_beats()
        mine = self._holder.model_id
        same = sum(1 for b in beats if b.model == mine)
        bound = sum(1 for n in eligible if n in required)
        share = fair_share(bound, same, self._cap) if bound else 0
        return min(self._cap, share + fair_share(len(eligible) - bound, len(beats), self._cap))

    async def _hand_back_one(self) -> None:
        serving = {slot.name for slot in self._holder.serving}
        for source in self.held:
            if source not in serving:
                await self.drop(source, "handed to another worker (fair share)")
                return

    async def drop(self, source: str, reason: str) -> None:
        """Stop commenting on `source` and release its lease."""
        self._forget(source, reason)
        await self._leases.release(source)

    def _forget(self, source: str, reason: str) -> None:
        self._renewed.pop(source, None)
        if source in self._holder.scheduler.slots:
            self._holder.lose(source, reason)

    def _expire_local(self) -> None:
        now = time.monotonic()
        for source in self.held:
            if now - self._renewed.get(source, now) > SAFETY * self._ttl:
                self._forget(source, "lease not renewed in time (Redis unreachable?)")

    async def release_all(self, reason: str = "worker stopping") -> None:
        """Release every lease (shutdown, or a model switch)."""
        for source in self.held:
            await self.drop(source, reason)
