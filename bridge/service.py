"""The bridge process: takes the rooms of LiveKit-enabled sources and keeps serving them.

Every tick it reads which sources want a room (`shared.livekit_rooms`), takes free room claims
up to LIVEKIT_MAX_ROOMS, renews its own, and stops sessions whose source no longer wants a
room or whose claim went to another bridge. Each source is served by its own task that joins
again with backoff after a failure (server unreachable, credentials refused, disconnect), so
one source's trouble never touches another's. A heartbeat hash (`Keys.livekit_bridge`) lists
the rooms served and the errors of those that cannot be joined now. Signals only set a flag.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from bridge.claims import RoomClaims
from bridge.room import RoomError, RoomFactory
from bridge.session import SourceSession
from shared.backoff import Backoff
from shared.bus import REDIS_ERRORS
from shared.keys import Keys
from shared.livekit_rooms import livekit_sources, room_name
from shared.settings import Settings
from shared.status_records import LivekitBeat

log = logging.getLogger(__name__)

STOP_GRACE_S = 5.0


def new_bridge_id() -> str:
    """A bridge id unique among running bridges: host, pid and a random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class Served:
    """A source whose room this bridge holds."""

    task: asyncio.Task[None]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    session: SourceSession | None = None
    error: str = ""


class Bridge:
    """Serves the rooms of LiveKit-enabled sources, sharing them with other bridges."""

    def __init__(
        self,
        redis: aioredis.Redis,
        settings: Settings,
        rooms: RoomFactory,
        bridge_id: str = "",
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.id = bridge_id or new_bridge_id()
        self.claims = RoomClaims(redis, self.keys, self.id, int(settings.claim_ttl * 1000))
        self.rooms = rooms
        self.served: dict[str, Served] = {}
        self.shutting_down = asyncio.Event()
        self.tick = min(1.0, settings.claim_ttl / 3)

    async def reconcile(self) -> None:
        """Take wanted rooms, renew ours, and let go of the rest."""
        wanted = await livekit_sources(self.redis, self.settings)
        for name in list(self.served):
            if name not in wanted:
                log.info("%s: no longer wants LiveKit; leaving its room", name)
                await self._leave(name)
            elif not await self.claims.hold(name):
                log.warning("%s: room claimed by another bridge; leaving it", name)
                await self._leave(name, release=False)
        for name in wanted:
            if name in self.served or len(self.served) >= self.settings.livekit_max_rooms:
                continue
            if await self.claims.hold(name):
                served = Served(task=asyncio.create_task(self._serve(name)))
                self.served[name] = served

    async def _serve(self, name: str) -> None:
        """Join `name`'s room and serve it; on any failure wait (backoff) and join again."""
        served = self.served[name]
        backoff = Backoff(self.settings.reconnect_delay, self.settings.max_reconnect_delay)
        while not served.stop.is_set():
            room = self.rooms(room_name(self.settings, name))
            served.session = session = SourceSession(self.redis, self.settings, name, room, self.id)
            started = time.monotonic()
            try:
                why = await session.run(served.stop)
                served.error = "" if why == "stopped" else f"room {why}"
            except RoomError as exc:
                served.error = str(exc)
            except REDIS_ERRORS as exc:
                served.error = f"Redis: {exc}"
            except Exception as exc:
                log.exception("%s: LiveKit session failed", name)
                served.error = f"{type(exc).__name__}: {exc}"
            if served.stop.is_set():
                return
            if time.monotonic() - started > self.settings.max_reconnect_delay:
                backoff.reset()  # it had been working: start the delays over
            delay = backoff.next()
            log.error("%s: %s; joining again in %.1fs", name, served.error, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(served.stop.wait(), delay)

    async def _leave(self, name: str, release: bool = True) -> None:
        served = self.served.pop(name)
        served.stop.set()
        try:
            await asyncio.wait_for(served.task, STOP_GRACE_S)
        except TimeoutError:
            log.warning("%s: session did not stop in %.0fs; cancelled", name, STOP_GRACE_S)
        if release:
            with contextlib.suppress(*REDIS_ERRORS):
                await self.claims.release(name)

    async def beat(self) -> None:
        """Write the heartbeat hash with a fresh TTL."""
        record = LivekitBeat(
            rooms=",".join(sorted(self.served)),
            errors="; ".join(f"{n}: {s.error}" for n, s in sorted(self.served.items()) if s.error),
            pid=os.getpid(),
            host=socket.gethostname(),
            updated_at=time.time(),
        )
        key = self.keys.livekit_bridge(self.id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=record.to_fields())
            pipe.pexpire(key, int(self.settings.heartbeat_ttl * 1000))
            await pipe.execute()

    async def run(self, handle_signals: bool = True) -> None:
        """Serve rooms until SIGTERM/SIGINT (or `shutting_down`), then leave them all."""
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.shutting_down.set)
        log.info("LiveKit bridge %s for %s", self.id, self.settings.livekit_url)
        while not self.shutting_down.is_set():
            try:
                await self.reconcile()
                await self.beat()
            except REDIS_ERRORS as exc:
                log.warning("bridge tick skipped: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.shutting_down.wait(), self.tick)
        log.info("shutting down: leaving %d rooms", len(self.served))
        await asyncio.gather(*(self._leave(name) for name in list(self.served)))
        with contextlib.suppress(*REDIS_ERRORS):
            await self.redis.delete(self.keys.livekit_bridge(self.id))
