"""Fan-out of a source's pub/sub messages to the viewers on this API process.

One `Subscription` per source per process, however many viewers watch it. What a viewer is
sent is computed once per message, not once per viewer: a `Tap` per kind of viewer (SSE,
PCM, Opus) turns each message into a shared item (an encoded SSE event, aligned PCM, Opus
packets) and the relay appends that same object to every viewer of the kind. Each viewer
has a bounded `pending` list and one writer (api/streams.py, api/audio.py) that wakes up,
takes everything pending and writes it in one `send`; the relay never waits, so a viewer
that does not read loses its own messages (the newest are dropped once VIEWER_QUEUE are
pending) and never slows the relay or the other viewers. Counters move once per message.

After a Redis reconnect each viewer gets RECONNECTED, so it can tell its client and resume
from the history stream (pub/sub loses what was sent while disconnected). Viewers of taps
that want it get KEEPALIVE from one timer per relay when nothing was written for a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from api.metrics import ApiMetrics
from shared.bus import Subscription, source_channels
from shared.keys import Keys
from shared.messages import AnyMessage

log = logging.getLogger(__name__)


class Marker:
    """A control item a relay puts in a viewer's pending list (not a message)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


RECONNECTED = Marker("RECONNECTED")
KEEPALIVE = Marker("KEEPALIVE")


class Viewer:
    """One client's pending items and the wake-up of its writer.

    `latest=True` keeps only the newest item (MJPEG: an older frame is replaced, counted as
    dropped); otherwise at most `limit` items wait and newer ones are dropped.
    """

    __slots__ = ("active", "dropped", "latest", "limit", "pending", "waiter")

    def __init__(self, limit: int, latest: bool = False) -> None:
        self.limit = limit
        self.latest = latest
        self.pending: list[Any] = []
        self.waiter: asyncio.Future[None] | None = None
        self.dropped = 0
        self.active = False  # something was written since the last keep-alive tick

    def offer(self, item: Any) -> bool:
        """Add `item` without waiting; False (and counted) when it or an older one is lost."""
        pending = self.pending
        if len(pending) >= self.limit:
            self.dropped += 1
            if self.latest:
                pending[-1] = item
            return False
        pending.append(item)
        self._wake()
        return True

    def force(self, item: Any) -> None:
        """Add `item` even when full, dropping the oldest (markers must arrive)."""
        if len(self.pending) >= self.limit:
            del self.pending[0]
            self.dropped += 1
        self.pending.append(item)
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def take(self) -> list[Any]:
        """Everything pending (at least one item), waiting for it if need be."""
        while not self.pending:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        items, self.pending = self.pending, []
        self.active = True
        return items


class Tap(Protocol):
    """Turns each message into what every viewer of one kind is sent (None: nothing)."""

    keepalive: bool

    def convert(self, message: AnyMessage) -> object | None: ...


class SourceRelay:
    """The one subscription of a source and the viewers it feeds, grouped by kind."""

    def __init__(
        self,
        source: str,
        redis_url: str,
        keys: Keys,
        metrics: ApiMetrics,
        taps: dict[str, Callable[[], Tap]],
        keepalive: float,
        cluster: bool = False,
    ) -> None:
        self.source = source
        self.metrics = metrics
        self.tap_factories = taps
        self.taps: dict[str, Tap] = {}
        self.viewers: dict[str, set[Viewer]] = {}
        self.keepalive = keepalive
        self.tasks: list[asyncio.Task[None]] = []
        self.subscription = Subscription(
            redis_url, source_channels(keys, source), on_reconnect=self.reconnected, cluster=cluster
        )

    def count(self) -> int:
        return sum(len(v) for v in self.viewers.values())

    def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self._run(), name=f"relay-{self.source}"),
            asyncio.create_task(self._keepalive(), name=f"keepalive-{self.source}"),
        ]

    def add(self, kind: str, viewer: Viewer) -> None:
        if kind not in self.taps:
            self.taps[kind] = self.tap_factories[kind]()  # state (an encoder) per relay
            self.viewers[kind] = set()
        self.viewers[kind].add(viewer)

    def discard(self, kind: str, viewer: Viewer) -> None:
        viewers = self.viewers.get(kind)
        if viewers is None:
            return
        viewers.discard(viewer)
        if not viewers:
            del self.viewers[kind], self.taps[kind]

    async def _run(self) -> None:
        async for _channel, message in self.subscription.messages():
            for kind, tap in list(self.taps.items()):
                try:
                    item = tap.convert(message)
                except Exception:  # one bad message (an encoder error) must not stop the relay
                    log.exception(
                        "%s viewers of %s: could not convert a message", kind, self.source
                    )
                    continue
                if item is not None:
                    self._fan_out(kind, item)
            # redis-py hands out a burst from its buffer without suspending; yield so the
            # writers send between messages (they coalesce whatever piled up meanwhile).
            await asyncio.sleep(0)

    def _fan_out(self, kind: str, item: object) -> None:
        delivered = dropped = 0
        for viewer in self.viewers[kind]:
            if viewer.offer(item):
                delivered += 1
            else:
                dropped += 1
        if delivered:
            self.metrics.messages.inc(delivered)
        if dropped:
            self.metrics.dropped.labels(kind).inc(dropped)

    async def _keepalive(self) -> None:
        """A KEEPALIVE to each idle viewer: nothing written for half to one period."""
        while True:
            await asyncio.sleep(self.keepalive / 2)
            for kind, tap in list(self.taps.items()):
                if not tap.keepalive:
                    continue
                for viewer in self.viewers[kind]:
                    if not viewer.active and not viewer.pending:
                        viewer.force(KEEPALIVE)
                    viewer.active = False

    async def reconnected(self) -> None:
        self.metrics.reconnects.inc()
        for viewers in self.viewers.values():
            for viewer in viewers:
                viewer.force(RECONNECTED)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


class MessageHub:
    """Per-process registry of source relays, created on the first viewer, stopped on the last.

    `taps` names each kind of viewer and makes its converter (one per relay).
    """

    def __init__(
        self,
        redis_url: str,
        keys: Keys,
        metrics: ApiMetrics,
        queue_size: int,
        taps: dict[str, Callable[[], Tap]],
        keepalive: float,
        cluster: bool = False,  # REDIS_CLUSTER: sharded subscriptions
    ) -> None:
        self._redis_url = redis_url
        self._cluster = cluster
        self._keys = keys
        self._metrics = metrics
        self._queue_size = queue_size
        self._taps = taps
        self._keepalive = keepalive
        self._relays: dict[str, SourceRelay] = {}

    def viewer_count(self, source: str | None = None) -> int:
        """Viewers of `source` (or of all sources) on this process."""
        relays = self._relays.values() if source is None else [self._relays.get(source)]
        return sum(r.count() for r in relays if r is not None)

    def _relay(self, source: str) -> SourceRelay:
        relay = self._relays.get(source)
        if relay is None:
            relay = SourceRelay(
                source,
                self._redis_url,
                self._keys,
                self._metrics,
                self._taps,
                self._keepalive,
                cluster=self._cluster,
            )
            self._relays[source] = relay
            relay.start()
        return relay

    @contextlib.asynccontextmanager
    async def viewer(
        self, source: str, kind: str, queue_size: int | None = None
    ) -> AsyncIterator[Viewer]:
        """Register a viewer of `source` of tap `kind` until the block ends.

        Waits (up to 5 s) until the relay is subscribed, so a caller that reads history
        next cannot miss a message published in between.
        """
        relay = self._relay(source)
        viewer = Viewer(queue_size or self._queue_size)
        relay.add(kind, viewer)
        gauge = self._metrics.viewers.labels(kind)
        gauge.inc()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(relay.subscription.connected.wait(), 5.0)
            yield viewer
        finally:
            relay.discard(kind, viewer)
            gauge.dec()
            if not relay.count() and self._relays.get(source) is relay:
                del self._relays[source]
                await relay.stop()

    async def close(self) -> None:
        relays, self._relays = list(self._relays.values()), {}
        for relay in relays:
            await relay.stop()
