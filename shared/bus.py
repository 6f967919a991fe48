"""Typed access to the bus: the Redis client factory, a publisher per source, and a
subscription that survives Redis going away.

redis-py's asyncio pub/sub does not reliably reconnect by itself (PITFALLS.md), so
`Subscription` runs its own loop: on a connection error it backs off, reconnects,
resubscribes and tells its owner through `on_reconnect`, so viewers can be told and can
resume from the history stream (pub/sub is at-most-once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

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

log = logging.getLogger(__name__)

REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


def connect_redis(url: str, *, decode: bool = False) -> aioredis.Redis:
    """An asyncio Redis client with a health check, for one process to share."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        url,
        decode_responses=decode,
        health_check_interval=10,
        socket_connect_timeout=5,
        socket_keepalive=True,
        retry_on_timeout=True,
    )
    return client


class SourcePublisher:
    """Publishes the typed messages of one source on the channels that carry them."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, source: str) -> None:
        self._redis = redis
        self._keys = keys
        self.source = source

    async def text(self, chunk: TextChunk) -> None:
        await self._redis.publish(self._keys.text_channel(self.source), encode_message(chunk))

    async def audio(self, chunk: AudioChunk) -> None:
        await self._redis.publish(self._keys.audio_channel(self.source), encode_message(chunk))

    async def event(self, event: CycleEvent | SourceNotice) -> None:
        await self._redis.publish(self._keys.events_channel(self.source), encode_message(event))

    async def control(self, command: InstructionChanged) -> None:
        await self._redis.publish(self._keys.control_channel(self.source), encode_message(command))


def source_channels(keys: Keys, source: str) -> list[str]:
    """The channels a viewer of `source` needs: text, audio and events."""
    return [keys.text_channel(source), keys.audio_channel(source), keys.events_channel(source)]


class Subscription:
    """A pub/sub subscription to fixed channels and patterns that reconnects by itself.

    Iterate `messages()` for (channel, message) pairs; malformed payloads are logged and
    skipped. After each reconnect `on_reconnect` is awaited (messages published while
    disconnected are lost; the owner decides how to catch up).
    """

    def __init__(
        self,
        url: str,
        channels: Sequence[str] = (),
        patterns: Sequence[str] = (),
        *,
        on_reconnect: Callable[[], Awaitable[None]] | None = None,
        max_backoff: float = 5.0,
    ) -> None:
        self._url = url
        self._channels = list(channels)
        self._patterns = list(patterns)
        self._on_reconnect = on_reconnect
        self._max_backoff = max_backoff
        self.reconnects = 0
        self.connected = asyncio.Event()

    async def messages(self) -> AsyncIterator[tuple[str, AnyMessage]]:
        delay = 0.1
        first = True
        while True:
            client = connect_redis(self._url)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                if self._channels:
                    await pubsub.subscribe(*self._channels)
                if self._patterns:
                    await pubsub.psubscribe(*self._patterns)
                self.connected.set()
                if not first:
                    self.reconnects += 1
                    log.info(
                        "resubscribed to %s after a Redis outage", self._channels or self._patterns
                    )
                    if self._on_reconnect is not None:
                        await self._on_reconnect()
                first, delay = False, 0.1
                while True:
                    raw = await pubsub.get_message(timeout=1.0)
                    if raw is None or raw["type"] not in ("message", "pmessage"):
                        continue
                    channel = raw["channel"].decode()
                    message = decode_or_log(raw["data"], channel)
                    if message is not None:
                        yield channel, message
            except REDIS_ERRORS as exc:
                self.connected.clear()
                log.warning("subscription lost (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)
            finally:
                await _close_quietly(pubsub, client)


async def _close_quietly(pubsub: aioredis.client.PubSub, client: aioredis.Redis) -> None:
    # Closing a connection to a dead server can itself raise; the loop must not die of it.
    for close in (pubsub.aclose, client.aclose):
        try:
            await close()
        except REDIS_ERRORS:
            pass
        except RuntimeError:
            pass
