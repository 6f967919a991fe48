"""Fan-out of a source's pub/sub messages to the viewers on this API process.

One `Subscription` per source per process, however many viewers watch it. Each viewer has
its own bounded queue (VIEWER_QUEUE); the relay only ever `put_nowait`s, so a viewer that
does not read loses its own messages and never slows the relay or the other viewers.
After a Redis reconnect each viewer gets a RECONNECTED marker, so it can tell its client
and resume from the history stream (pub/sub loses what was sent while disconnected).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from api.metrics import ApiMetrics
from shared.bus import Subscription, source_channels
from shared.keys import Keys
from shared.messages import AnyMessage

log = logging.getLogger(__name__)


class Reconnected:
    """Marker put in every viewer's queue after the relay resubscribed."""


RECONNECTED = Reconnected()
Item = AnyMessage | Reconnected


@dataclass(eq=False)
class Viewer:
    """One client's view of a source: the message types it wants and its bounded queue."""

    kinds: tuple[type, ...]
    label: str
    queue: asyncio.Queue[Item]
    dropped: int = 0

    def offer(self, item: Item) -> bool:
        """Queue `item` without waiting; False (and counted) when the viewer is behind."""
        try:
            self.queue.put_nowait(item)
            return True
        except asyncio.QueueFull:
            self.dropped += 1
            return False

    def force(self, item: Item) -> None:
        """Queue `item` even when full, dropping the oldest (markers must arrive)."""
        while True:
            try:
                self.queue.put_nowait(item)
                return
            except asyncio.QueueFull:
                with contextlib.suppress(asyncio.QueueEmpty):
                    self.queue.get_nowait()
                    self.dropped += 1


class SourceRelay:
    """The one subscription of a source and the viewers it feeds."""

    def __init__(
        self, source: str, redis_url: str, keys: Keys, metrics: ApiMetrics, cluster: bool = False
    ) -> None:
        self.source = source
        self.metrics = metrics
        self.viewers: set[Viewer] = set()
        self.task: asyncio.Task[None] | None = None
        self.subscription = Subscription(
            redis_url, source_channels(keys, source), on_reconnect=self.reconnected, cluster=cluster
        )

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"relay-{self.source}")

    async def _run(self) -> None:
        async for _channel, message in self.subscription.messages():
            for viewer in list(self.viewers):
                if not isinstance(message, viewer.kinds):
                    continue
                if viewer.offer(message):
                    self.metrics.messages.inc()
                else:
                    self.metrics.dropped.labels(viewer.label).inc()
            # redis-py hands out a burst from its buffer without suspending; yield so the
            # viewers drain their queues between messages instead of after the burst.
            await asyncio.sleep(0)

    async def reconnected(self) -> None:
        self.metrics.reconnects.inc()
        for viewer in list(self.viewers):
            viewer.force(RECONNECTED)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


class MessageHub:
    """Per-process registry of source relays, created on the first viewer, stopped on the last."""

    def __init__(
        self,
        redis_url: str,
        keys: Keys,
        metrics: ApiMetrics,
        queue_size: int,
        cluster: bool = False,  # REDIS_CLUSTER: sharded subscriptions
    ) -> None:
        self._redis_url = redis_url
        self._cluster = cluster
        self._keys = keys
        self._metrics = metrics
        self._queue_size = queue_size
        self._relays: dict[str, SourceRelay] = {}

    def viewer_count(self, source: str | None = None) -> int:
        """Viewers of `source` (or of all sources) on this process."""
        relays = self._relays.values() if source is None else [self._relays.get(source)]
        return sum(len(r.viewers) for r in relays if r is not None)

    def _relay(self, source: str) -> SourceRelay:
        relay = self._relays.get(source)
        if relay is None:
            relay = SourceRelay(
                source, self._redis_url, self._keys, self._metrics, cluster=self._cluster
            )
            self._relays[source] = relay
            relay.start()
        return relay

    @contextlib.asynccontextmanager
    async def viewer(
        self, source: str, kinds: tuple[type, ...], label: str, queue_size: int | None = None
    ) -> AsyncIterator[Viewer]:
        """Register a viewer of `source` for message types `kinds` until the block ends.

        Waits (up to 5 s) until the relay is subscribed, so a caller that reads history
        next cannot miss a message published in between.
        """
        relay = self._relay(source)
        viewer = Viewer(kinds, label, asyncio.Queue(queue_size or self._queue_size))
        relay.viewers.add(viewer)
        self._metrics.viewers.labels(label).inc()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(relay.subscription.connected.wait(), 5.0)
            yield viewer
        finally:
            relay.viewers.discard(viewer)
            self._metrics.viewers.labels(label).dec()
            if not relay.viewers and self._relays.get(source) is relay:
                del self._relays[source]
                await relay.stop()

    async def close(self) -> None:
        relays, self._relays = list(self._relays.values()), {}
        for relay in relays:
            await relay.stop()
