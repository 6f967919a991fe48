"""What differs when REDIS_CLUSTER is set: the cluster client, sharded pub/sub, and what is refused.

Every key and channel of one source carries the source as a hash tag (`Keys.per_source`), so
a source lives on one shard: its multi-key commands, scripts and pub/sub stay on one node.
The global keys (source registry, desired sources, worker heartbeats) are single-key
commands, so they work from any node. Three things differ from one Redis:

- Transactions: redis-py 5's asyncio cluster pipeline has no MULTI/EXEC, and the registry
  updates span the registry key and a source's keys (two slots). `transaction()` gives a
  plain pipeline there: the commands run in order, not atomically.
- Pub/sub: classic PUBLISH goes to every node of a cluster. Lookout uses sharded pub/sub
  (SPUBLISH/SSUBSCRIBE, Redis 7) there: a message goes only to the shard of its channel.
  Sharded pub/sub has no pattern subscription; pattern subscribers follow the registry
  instead (shared/source_subscriptions.py).
- arq: its job queues use MULTI/EXEC over keys of several slots (queue, job, result keys)
  and a standalone client. Asks and supervised sources are refused (`ClusterUnsupported`);
  producers started with `--source/--url` and the API ingest socket feed sources instead.
"""

from __future__ import annotations

from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.exceptions import (
    AskError,
    ClusterError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)

# Raised while a cluster reshapes, a shard is down or no seed node answers (redis-py raises
# RedisClusterException for that): waited out like a lost connection. RedisClusterException
# also covers a cross-slot command, which the hash tags rule out (tests/test_redis_cluster.py).
CLUSTER_ERRORS = (ClusterError, AskError, TryAgainError, RedisClusterException)


class ClusterUnsupported(Exception):
    """A feature that needs one Redis server (arq's job queues) was asked of a cluster."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what} needs arq's job queue, which does not run on a Redis Cluster "
            "(REDIS_CLUSTER=true); use a standalone Redis (or Sentinel) for it"
        )


def is_cluster(client: object) -> bool:
    """True for a client made by `cluster_client` (asyncio or blocking)."""
    return isinstance(client, RedisCluster | SyncRedisCluster)


def refuse_in_cluster(client: object, what: str) -> None:
    """Raise ClusterUnsupported when `client` is a cluster client."""
    if is_cluster(client):
        raise ClusterUnsupported(what)


def cluster_client(url: str, **options: Any) -> aioredis.Redis:
    """An asyncio Redis Cluster client seeded by the node at `url`.

    Typed as `aioredis.Redis`: RedisCluster speaks the same command methods (they share the
    command mixins), and the few places that differ (transactions, publishing, pub/sub,
    server info) branch on `is_cluster`.
    """
    options.pop("health_check_interval", None)  # per-connection option; the cluster's nodes ping
    return cast(aioredis.Redis, RedisCluster.from_url(url, **options))


def sync_cluster_client(url: str, **options: Any) -> redis.Redis:
    """A blocking Redis Cluster client (health checks), typed like `cluster_client`."""
    return cast(redis.Redis, SyncRedisCluster.from_url(url, **options))


def transaction(client: aioredis.Redis) -> Pipeline:
    """MULTI/EXEC on one Redis; on a cluster a pipeline whose commands run in order, each
    atomic on its own (see the module docstring)."""
    return client.pipeline(transaction=not is_cluster(client))


async def publish(client: aioredis.Redis, channel: str, data: bytes) -> None:
    """PUBLISH on one Redis; SPUBLISH (to the channel's shard only) on a cluster."""
    if is_cluster(client):
        await client.execute_command("SPUBLISH", channel, data)  # type: ignore[no-untyped-call]
    else:
        await client.publish(channel, data)


async def server_run_id(client: aioredis.Redis, key: str) -> str:
    """The run id of the Redis server holding `key` (it changes when that server restarts)."""
    if is_cluster(client):
        cluster = cast(RedisCluster, client)
        info = await cluster.info("server", target_nodes=cluster.get_node_from_key(key))
    else:
        info = await client.info("server")
    return str(info.get("run_id", ""))


async def shard_client(url: str, channels: list[str], **options: Any) -> aioredis.Redis:
    """A plain client on the node serving `channels` (all in one slot), for SSUBSCRIBE.

    redis-py 5's asyncio cluster client has no pub/sub, so the subscriber asks the cluster
    which node serves the slot and talks to that node directly. When the slot moves, the
    node ends the subscription (`sunsubscribe`) and the subscriber connects again.
    """
    seed = cast(RedisCluster, cluster_client(url, **options))
    try:
        await seed.initialize()
        slots = {seed.keyslot(channel) for channel in channels}
        if len(slots) != 1:
            raise ValueError(f"sharded channels must share one hash slot: {channels}")
        node = seed.get_node_from_key(channels[0])
        if node is None:
            raise SlotNotCoveredError(f"no node serves the slot of {channels[0]!r}")
        # The node's own connection options: the URL's credentials and TLS, and the timeouts.
        pool = aioredis.ConnectionPool(
            connection_class=node.connection_class, **{**node.connection_kwargs, **options}
        )
        return aioredis.Redis.from_pool(pool)
    finally:
        await seed.aclose()
