"""What differs when REDIS_CLUSTER is set: the cluster client, sharded pub/sub, and what is refused.

Every key and channel of one source carries the source as a hash tag (`Keys._per_source`), so
a source lives on one shard: its multi-key commands, scripts and pub/sub stay on one node.
The global keys (source registry, desired sources, worker heartbeats) are single-key
commands, so they work from any node. Three things differ from one Redis:

- Transactions: redis-py 5's asyncio cluster pipeline has no MULTI/EXEC, and the registry
  updates span the registry key and a source's keys (two slots). `transaction()` gives a
  plain pipeline there: the commands run in order, not atomically.
- Pub/sub: classic PUBLISH goes to every node of a cluster. Lookout uses sharded pub/sub
  (SPUBLISH/SSUBSCRIBE, Redis 7) there: a message goes only to the shard of its channel.
  Sharded pub/sub has no pattern subscription; pattern subscribers subscribe per source
  instead, following the registry or the sources a worker holds (source_subscriptions.py).
- arq: its job queues use MULTI/EXEC over keys of several slots (queue, job, result keys)
  and a standalone client. Asks and supervised sources are refused (`ClusterUnsupported`);
  producers started with `--source/--url` and the API ingest socket feed sources instead.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.exceptions import (
    AskError,
    ClusterError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
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


# Set while a command of a `_Cluster` runs: an aclose() then comes from redis-py's error path.
_IN_COMMAND: ContextVar[bool] = ContextVar("lookout_cluster_in_command", default=False)


def _closed_under_us(exc: Exception) -> bool:
    return isinstance(exc, AttributeError | TypeError) and "'NoneType'" in str(exc)


class _Seeds(dict[str, ClusterNode]):
    """The nodes a cluster client (re)reads the layout from; they are never dropped.

    redis-py 5.3 drops a node from its seeds on a connection error to it, and the failures of
    the busy connections it closes itself (see `_Cluster`) drop healthy nodes too, until no
    seed is left and the client can never connect again ("Redis Cluster cannot be connected").
    Removal while another task walks the seeds also breaks that walk. So removals are ignored:
    a node that is down costs one refused connection per layout read.
    """

    def pop(self, key: str, default: Any = None) -> Any:
        return self.get(key, default)


class _Cluster(RedisCluster):
    """RedisCluster whose shards fail on their own: one node down leaves the others usable.

    redis-py 5.3 answers a connection error on one node by `aclose()`: it closes every
    connection of the client, including those other tasks are using on healthy nodes at that
    moment, so their commands fail too (some with AttributeError on the closed socket). And it
    re-reads the command table from the first master on every layout read, which fails for
    good while that master is down. Here, an `aclose()` that redis-py makes from inside a
    command only marks the layout for re-reading; the command table is read once; and what
    still fails on a closed socket is raised as ConnectionError for the callers' retry loops.
    A close by Lookout itself closes everything. Its seeds are kept (`_Seeds`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.nodes_manager.startup_nodes = _Seeds(self.nodes_manager.startup_nodes)

    async def initialize(self) -> RedisCluster:
        if self._initialize:
            if not self._lock:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._initialize:
                    await self.nodes_manager.initialize()
                    if not self.commands_parser.commands:
                        await self.commands_parser.initialize(self.nodes_manager.default_node)
                    self._initialize = False
        return self

    async def aclose(self) -> None:
        if _IN_COMMAND.get():
            self._initialize = True  # re-read the layout before the next command
            return
        await super().aclose()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        token = _IN_COMMAND.set(True)
        try:
            return await super().execute_command(*args, **kwargs)
        except (AttributeError, TypeError) as exc:
            if not _closed_under_us(exc):
                raise
            raise RedisConnectionError(f"connection closed under a command: {exc}") from exc
        finally:
            _IN_COMMAND.reset(token)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        super().pipeline(transaction, shard_hint)  # its checks
        # redis-py's stubs declare an abstract `connection_pool` its own ClusterPipeline lacks.
        return _ClusterPipeline(self)  # type: ignore[abstract]


class _ClusterPipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        token = _IN_COMMAND.set(True)
        try:
            return await super().execute(raise_on_error, allow_redirections)
        except (AttributeError, TypeError) as exc:
            if not _closed_under_us(exc):
                raise
            raise RedisConnectionError(f"connection closed under a pipeline: {exc}") from exc
        finally:
            _IN_COMMAND.reset(token)


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
    # Per-connection options RedisCluster does not take: it retries a failed node itself
    # (reseeding its view of the cluster) and checks its nodes on errors.
    for option in ("health_check_interval", "retry_on_timeout"):
        options.pop(option, None)
    return cast(aioredis.Redis, _Cluster.from_url(url, **options))


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
