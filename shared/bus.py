"""Typed access to the bus: the Redis client factory, a publisher per source, and a
subscription that survives Redis going away.

redis-py's asyncio pub/sub does not reliably reconnect by itself (redis-py #2089, #2417), so
`Subscription` runs its own loop: on a connection error it backs off, reconnects,
resubscribes and tells its owner through `on_reconnect`, so viewers can be told and can
resume from the history stream (pub/sub is at-most-once).

With REDIS_CLUSTER set, clients are cluster clients and pub/sub is sharded (shared/cluster.py);
a `redis+sentinel://` REDIS_URL gives clients of the master Sentinel names (shared/sentinel.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.backoff import Backoff
from shared.cluster import (
    CLUSTER_ERRORS,
    cluster_client,
    publish,
    shard_client,
    sync_cluster_client,
)
from shared.keys import Keys
from shared.messages import (
    AnyMessage,
    AudioChunk,
    CycleEvent,
    InstructionChanged,
    SourceNotice,
    TextChunk,
    decode_or_log,
    encode_message,
)
from shared.sentinel import is_sentinel_url, sentinel_client, sync_sentinel_client

log = logging.getLogger(__name__)

REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError, *CLUSTER_ERRORS)
# Every Redis client fails within these instead of hanging on a frozen server (a stopped
# process keeps its socket open: without a read timeout a command waits forever). Blocking
# reads (XREAD BLOCK, pub/sub polls) block for at most 1 s, well under the read timeout.
CONNECT_TIMEOUT_S = 3.0
SOCKET_TIMEOUT_S = 5.0
SUBSCRIBE_TIMEOUT_S = 5.0


def redis_timeouts() -> dict[str, Any]:
    """The timeout options every Redis client and connection pool in Lookout is built with."""
    return {
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_keepalive": True,
        "retry_on_timeout": False,  # a retry would double the time a caller waits to learn
    }


def connect_redis(url: str, *, decode: bool = False, cluster: bool = False) -> aioredis.Redis:
    """An asyncio Redis client with a health check and timeouts, for one process to share:
    the one factory of Lookout's clients (`cluster`: REDIS_CLUSTER, `url` a seed node)."""
    options = {"decode_responses": decode, "health_check_interval": 10, **redis_timeouts()}
    if cluster:
        return cluster_client(url, **options)
    if is_sentinel_url(url):
        return sentinel_client(url, **options)
    client: aioredis.Redis = aioredis.Redis.from_url(url, **options)
    return client


def connect_pool(url: str) -> aioredis.ConnectionPool:
    """A connection pool with Lookout's timeouts, for arq (which takes a pool, not a client).
    After closing it, `shared.sentinel.close_sentinels` closes what a Sentinel pool asked."""
    if is_sentinel_url(url):
        return sentinel_client(url, **redis_timeouts()).connection_pool
    return aioredis.ConnectionPool.from_url(url, **redis_timeouts())


def connect_redis_sync(url: str, *, timeout: float, cluster: bool = False) -> redis.Redis:
    """A blocking client for one-off checks (`lookout health`); a cluster client connects
    at once and raises RedisClusterException when no node answers."""
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if cluster:
        return sync_cluster_client(url, **options)
    if is_sentinel_url(url):
        return sync_sentinel_client(url, **options)
    client: redis.Redis = redis.Redis.from_url(url, **options)
    return client


class SourcePublisher:
    """Publishes the typed messages of one source on the channels that carry them."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, source: str) -> None:
        self._redis = redis
        self._keys = keys
        self.source = source

    async def text(self, chunk: TextChunk) -> None:
        await publish(self._redis, self._keys.text_channel(self.source), encode_message(chunk))

    async def audio(self, chunk: AudioChunk) -> None:
        await publish(self._redis, self._keys.audio_channel(self.source), encode_message(chunk))

    async def event(self, event: CycleEvent | SourceNotice) -> None:
        await publish(self._redis, self._keys.events_channel(self.source), encode_message(event))

    async def control(self, command: InstructionChanged) -> None:
        await publish(self._redis, self._keys.control_channel(self.source), encode_message(command))


def source_channels(keys: Keys, source: str) -> list[str]:
    """The channels a viewer of `source` needs: text, audio and events."""
    return [keys.text_channel(source), keys.audio_channel(source), keys.events_channel(source)]


class Subscription:
    """A pub/sub subscription to fixed channels and patterns that reconnects by itself.

    Iterate `messages()` for (channel, message) pairs; malformed payloads are logged and
    skipped. After each reconnect `on_reconnect` is awaited (messages published while
    disconnected are lost; the owner decides how to catch up).

    `cluster`: SSUBSCRIBE on the node serving the channels, which must share one hash slot
    (one source's channels do); no patterns (sharded pub/sub has none).
    """

    def __init__(
        self,
        url: str,
        channels: Sequence[str] = (),
        patterns: Sequence[str] = (),
        *,
        on_reconnect: Callable[[], Awaitable[None]] | None = None,
        max_backoff: float = 5.0,
        cluster: bool = False,
    ) -> None:
        if cluster and (patterns or not channels):
            raise ValueError("a cluster subscription takes channels of one source, no patterns")
        self._url = url
        self._cluster = cluster
        self._channels = list(channels)
        self._patterns = list(patterns)
        self._on_reconnect = on_reconnect
        self._max_backoff = max_backoff
        self.reconnects = 0
        self.connected = asyncio.Event()

    async def messages(self) -> AsyncIterator[tuple[str, AnyMessage]]:
        backoff = Backoff(0.1, self._max_backoff)
        first = True
        while True:
            client, pubsub = None, None
            try:
                client = await self._connect()
                pubsub = client.pubsub()
                early = await self._subscribe(pubsub)
                self.connected.set()
                if not first:
                    self.reconnects += 1
                    log.info(
                        "resubscribed to %s after a Redis outage", self._channels or self._patterns
                    )
                    if self._on_reconnect is not None:
                        await self._on_reconnect()
                first = False
                backoff.reset()
                for raw in early:
                    if (got := _decoded(raw)) is not None:
                        yield got
                while True:
                    if (got := _decoded(await pubsub.get_message(timeout=1.0))) is not None:
                        yield got
            except REDIS_ERRORS as exc:
                self.connected.clear()
                delay = backoff.next()
                log.warning("subscription lost (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
            finally:
                await _close_quietly(pubsub, client)

    async def _connect(self) -> aioredis.Redis:
        if self._cluster:
            options = {"health_check_interval": 10, **redis_timeouts()}
            return await shard_client(self._url, self._channels, **options)
        return connect_redis(self._url)

    async def _subscribe(self, pubsub: aioredis.client.PubSub) -> list[dict[str, Any]]:
        """Subscribe and wait for Redis to confirm every channel and pattern.

        redis-py's subscribe() only sends the command; a message published from another
        connection before Redis ran it would be missed although `connected` was set. Messages
        that arrive between two confirmations are returned, to be delivered first.
        """
        if self._cluster:
            await pubsub.execute_command("SSUBSCRIBE", *self._channels)
        elif self._channels:
            await pubsub.subscribe(*self._channels)
        if self._patterns:
            await pubsub.psubscribe(*self._patterns)
        expected, confirmed = len(self._channels) + len(self._patterns), 0
        early: list[dict[str, Any]] = []
        deadline = time.monotonic() + SUBSCRIBE_TIMEOUT_S
        while confirmed < expected:
            if time.monotonic() > deadline:
                raise RedisTimeoutError(f"no subscribe confirmation in {SUBSCRIBE_TIMEOUT_S}s")
            raw = await pubsub.get_message(timeout=0.5)
            if raw is not None and raw["type"] in ("subscribe", "psubscribe", "ssubscribe"):
                confirmed += 1
            elif raw is not None:
                early.append(raw)
        return early


def _decoded(raw: dict[str, Any] | None) -> tuple[str, AnyMessage] | None:
    """(channel, message) of a pub/sub message; None for anything else or a malformed one."""
    if raw is not None and raw["type"] == "sunsubscribe":
        # The node no longer serves the channel's slot (resharded, or it became a replica).
        raise RedisConnectionError(f"{raw['channel']!r} moved to another node")
    if raw is None or raw["type"] not in ("message", "pmessage", "smessage"):
        return None
    channel = raw["channel"].decode()
    message = decode_or_log(raw["data"], channel)
    return None if message is None else (channel, message)


async def _close_quietly(
    pubsub: aioredis.client.PubSub | None, client: aioredis.Redis | None
) -> None:
    # Closing a connection to a dead server can itself raise; the loop must not die of it.
    closers: list[Callable[[], Awaitable[None]]] = [pubsub.aclose] if pubsub is not None else []
    closers += [client.aclose] if client is not None else []
    for close in closers:
        try:
            await close()
        except REDIS_ERRORS:
            pass
        except RuntimeError:
            pass
