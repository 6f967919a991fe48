"""A pattern subscription for sharded pub/sub: one subscription per source, for a changing set.

Sharded pub/sub (REDIS_CLUSTER) has no PSUBSCRIBE, so whoever listens to a channel of every
source (workers on control channels, the worker's metrics and `lookout tail '*'` on events)
subscribes to each source's channels on that source's shard instead, for the sources a
callable names (the registry, or the sources a worker holds), asked again every `refresh_s`.
A source that appears is followed from then on: what it published before is not seen, as
with any subscription that starts later (the state hash and history stream keep the truth).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import redis.asyncio as aioredis

from shared.bus import REDIS_ERRORS, Subscription, connect_redis
from shared.keys import Keys
from shared.messages import AnyMessage
from shared.sources import SourceRegistry

log = logging.getLogger(__name__)

Names = Callable[[], Awaitable[Iterable[str]]]
Message = tuple[str, AnyMessage]


class SourceSubscriptions:
    """Messages on `channels_of(source)` of every source that `names()` returns."""

    def __init__(
        self,
        url: str,
        channels_of: Callable[[str], list[str]],
        names: Names,
        *,
        on_reconnect: Callable[[], Awaitable[None]] | None = None,
        refresh_s: float = 1.0,
    ) -> None:
        self._url = url
        self._channels_of = channels_of
        self._names = names
        self._on_reconnect = on_reconnect
        self._refresh_s = refresh_s
        self._pumps: dict[str, asyncio.Task[None]] = {}

    async def messages(self) -> AsyncIterator[Message]:
        queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=1000)
        refresher = asyncio.create_task(self._follow(queue))
        try:
            while True:
                yield await queue.get()
        finally:
            tasks = [refresher, *self._pumps.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._pumps.clear()

    async def _follow(self, queue: asyncio.Queue[Message]) -> None:
        while True:
            try:
                wanted = set(await self._names())
            except REDIS_ERRORS as exc:
                log.warning("could not list sources to follow (%s); retrying", exc)
                wanted = set(self._pumps)
            for gone in set(self._pumps) - wanted:
                task = self._pumps.pop(gone)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for source in wanted - set(self._pumps):
                self._pumps[source] = asyncio.create_task(self._pump(source, queue))
            await asyncio.sleep(self._refresh_s)

    async def _pump(self, source: str, queue: asyncio.Queue[Message]) -> None:
        subscription = Subscription(
            self._url, self._channels_of(source), on_reconnect=self._on_reconnect, cluster=True
        )
        async for message in subscription.messages():
            await queue.put(message)


@contextlib.asynccontextmanager
async def registered_sources(url: str, keys: Keys) -> AsyncIterator[Names]:
    """`names` for `SourceSubscriptions`: the registered sources, through a client of its own."""
    client: aioredis.Redis = connect_redis(url, cluster=True)
    registry = SourceRegistry(client, keys, default_instruction="")

    async def names() -> list[str]:
        return await registry.names()

    try:
        yield names
    finally:
        with contextlib.suppress(*REDIS_ERRORS):
            await client.aclose()
