"""The status a producer keeps for its source in Redis, with a TTL so a dead one shows as gone.

`Keys.producer_status(source)` is a HASH: state (connecting | live | reconnecting | stopped),
kind, url, fps, last_frame_ts, frames, attempt, error, pid, host, updated_at. Every write
renews its TTL (HEARTBEAT_TTL); a state change is also announced as a `SourceNotice` with
what="producer" on the source's events channel.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import deque
from typing import Literal

import redis.asyncio as aioredis
from msgspec.structs import replace

from producers.metrics import METRICS
from shared.bus import REDIS_ERRORS, SourcePublisher
from shared.cluster import transaction
from shared.keys import Keys
from shared.messages import SourceNotice
from shared.settings import Settings
from shared.status_records import ProducerStatus

log = logging.getLogger(__name__)

State = Literal["connecting", "live", "reconnecting", "stopped"]
FPS_WINDOW_S = 5.0


class StatusWriter:
    """Holds one source's producer status and writes it on changes and on each heartbeat."""

    def __init__(
        self, redis: aioredis.Redis, settings: Settings, source: str, kind: str, url: str
    ) -> None:
        self._redis = redis
        self._keys = Keys(settings.key_prefix)
        self._ttl_ms = int(settings.heartbeat_ttl * 1000)
        self.source = source
        self.state: State = "connecting"
        self.status = ProducerStatus(
            state="connecting", kind=kind, url=url, pid=os.getpid(), host=socket.gethostname()
        )
        self._frames = 0
        self._recent: deque[float] = deque()

    def frame(self, ts: float) -> None:
        """Count a published frame (cheap: written with the next heartbeat)."""
        now = time.monotonic()
        self._frames += 1
        self._recent.append(now)
        while self._recent and now - self._recent[0] > FPS_WINDOW_S:
            self._recent.popleft()
        self.status = replace(self.status, frames=self._frames, last_frame_ts=ts)

    def fps(self) -> float:
        """Frames published per second over the last few seconds."""
        now = time.monotonic()
        while self._recent and now - self._recent[0] > FPS_WINDOW_S:
            self._recent.popleft()
        if len(self._recent) < 2:
            return 0.0
        return (len(self._recent) - 1) / max(now - self._recent[0], 1e-3)

    async def set_state(self, state: State, *, attempt: int = 0, error: str = "") -> None:
        """Change state (announcing it if it changed) and write the status now."""
        changed = state != self.state
        self.state = state
        self.status = replace(self.status, state=state, attempt=attempt, error=error[:500])
        await self.write()
        if changed:
            log.info("%s: %s%s", self.source, state, f" ({error})" if error else "")
            try:
                await SourcePublisher(self._redis, self._keys, self.source).event(
                    SourceNotice(source=self.source, what="producer", detail=state)
                )
            except REDIS_ERRORS as exc:
                log.warning("%s: could not announce state %s: %s", self.source, state, exc)

    async def write(self) -> None:
        """Write the whole status with a fresh TTL; a Redis outage is logged, not raised."""
        self.status = replace(self.status, fps=self.fps(), updated_at=time.time())
        METRICS.fps.labels(self.source).set(self.status.fps)
        METRICS.live.labels(self.source).set(1 if self.state == "live" else 0)
        key = self._keys.producer_status(self.source)
        try:
            async with transaction(self._redis) as pipe:
                pipe.hset(key, mapping=self.status.to_fields())
                pipe.pexpire(key, self._ttl_ms)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            log.warning("%s: status not written: %s", self.source, exc)

    async def heartbeat(self, stop: asyncio.Event) -> None:
        """Rewrite the status every third of the TTL until `stop` is set."""
        period = min(1.0, self._ttl_ms / 3000)
        while not stop.is_set():
            await self.write()
            try:
                await asyncio.wait_for(stop.wait(), period)
            except TimeoutError:
                pass
