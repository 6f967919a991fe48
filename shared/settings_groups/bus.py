"""The Redis bus: where it is, key names, stream lengths, heartbeats."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings_groups import var


@dataclass(frozen=True)
class BusSettings:
    """The `redis` group of `Settings`, its variables in the order the docs list them."""

    redis_url: str = var(
        "redis://127.0.0.1:6379/0",
        "Redis server every process talks through (redis://, rediss://, unix://, or "
        "redis+sentinel://HOST:PORT[,HOST:PORT]/SERVICE for the master Sentinel names)",
        "redis",
    )
    key_prefix: str = var(
        "lookout",
        "Prefix of every Redis key and channel (two deployments can share one Redis)",
        "redis",
    )
    frames_maxlen: int = var(
        300,
        "Approximate MAXLEN of each source's frames stream (entries)",
        "redis",
        lo=10,
        hi=100_000,
    )
    history_maxlen: int = var(
        1000,
        "Approximate MAXLEN of each source's commentary history stream",
        "redis",
        lo=10,
        hi=1_000_000,
    )
    heartbeat_ttl: float = var(
        10.0, "Seconds a process status key lives without a heartbeat", "redis", lo=2, hi=300
    )
    redis_cluster: bool = var(
        False,
        "REDIS_URL is a node of a Redis Cluster: connect with the cluster client and use "
        "sharded pub/sub (no job queues: asks and supervised sources are refused)",
        "redis",
    )
    snapshot_max_bytes: int = var(
        32768,
        "Largest snapshot kept beside each history entry (the window's newest JPEG, shrunk to "
        "fit; trimmed with the history, so at most HISTORY_MAXLEN of them a source); 0: none",
        "redis",
        lo=0,
        hi=4_000_000,
    )
