"""The worker's heartbeat and the per-source cycle statistics it keeps in Redis.

Heartbeat: `Keys.worker_status(worker_id)`, a HASH with the engine's fields, pid, host,
sources held, cycle count and `beat_ts`, expiring after HEARTBEAT_TTL unless renewed; a typed
`WorkerBeat` (shared/status_records.py) written with `to_fields` and read back with `from_fields`.
Other workers count live ones from `beat_ts` to share sources (leases.py).

Statistics: `Keys.worker_stats(source)`, a HASH (no TTL) with counters cycles, skipped,
interrupted, failed, answers; last_latency_ms, mean_latency_ms (over latency_count
measurements, sum in latency_sum_ms), last_commentary_ts and the worker that wrote last.
Counters are HINCRBY, so they keep counting when another worker takes the source over.
Read back as a typed `SourceStats` (shared/status_records.py).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from typing import Literal

import redis.asyncio as aioredis

from shared.cluster import transaction
from shared.keys import Keys
from shared.status_records import SourceStats, WorkerBeat
from worker.engines.base import EngineInfo

StatName = Literal["cycles", "skipped", "interrupted", "failed", "answers"]


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


async def beat(
    redis: aioredis.Redis,
    keys: Keys,
    worker_id: str,
    info: EngineInfo,
    sources: Iterable[str],
    cycles: int,
    started_at: float,
    ttl: float,
    model: str = "",
    tokens_per_s: float = 0.0,
) -> None:
    """Write the heartbeat hash and renew its TTL."""
    key = keys.worker_status(worker_id)
    record = WorkerBeat(
        worker=worker_id,
        engine=info.engine,
        checkpoint=info.checkpoint,
        dtype=info.dtype,
        device=info.device,
        load_seconds=info.load_seconds,
        pid=os.getpid(),
        host=socket.gethostname(),
        sources=sorted(sources),
        cycles=cycles,
        started_at=started_at,
        beat_ts=time.time(),
        model=model,
        modalities=["image", "text"] + (["speech"] if info.extra.get("tts") == "on" else []),
        tokens_per_s=tokens_per_s,
        server=info.extra.get("server", ""),
        server_models=[m for m in info.extra.get("server_models", "").split(",") if m],
        extra=dict(info.extra),
    )
    fields = record.to_fields()
    async with transaction(redis) as pipe:
        pipe.delete(key)  # drop fields of sources no longer held
        pipe.hset(key, mapping=fields)
        pipe.pexpire(key, int(ttl * 1000))
        await pipe.execute()


async def remove_heartbeat(redis: aioredis.Redis, keys: Keys, worker_id: str) -> None:
    await redis.delete(keys.worker_status(worker_id))


async def count(
    redis: aioredis.Redis,
    keys: Keys,
    source: str,
    worker_id: str,
    stat: StatName,
    latency_ms: float | None = None,
) -> None:
    """Add one to `stat` of `source`; with a latency, update last and mean latency too."""
    key = keys.worker_stats(source)
    async with transaction(redis) as pipe:
        pipe.hincrby(key, stat, 1)
        pipe.hset(key, "worker", worker_id)
        if stat in ("cycles", "interrupted"):
            pipe.hset(key, "last_commentary_ts", f"{time.time():.3f}")
        if latency_ms is not None:
            pipe.hset(key, "last_latency_ms", f"{latency_ms:.1f}")
            pipe.hincrbyfloat(key, "latency_sum_ms", latency_ms)
            pipe.hincrby(key, "latency_count", 1)
        results = await pipe.execute()
    if latency_ms is not None:
        total, n = float(results[-2]), int(results[-1])
        await redis.hset(key, "mean_latency_ms", f"{total / max(n, 1):.1f}")  # type: ignore[misc]


async def read_stats(redis: aioredis.Redis, keys: Keys, source: str) -> SourceStats:
    """The statistics of `source` (all zero if none yet)."""
    raw = await redis.hgetall(keys.worker_stats(source))  # type: ignore[misc]
    return SourceStats.from_fields(raw)
