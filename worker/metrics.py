"""Prometheus metrics of one worker process, served on WORKER_METRICS_PORT at /metrics.

The numbers come from the worker's own cycle events (`CycleEvent` on each source's events
channel, filtered by this worker's id): the events are the contract every viewer already
reads, so the metrics say exactly what the worker told everyone, and the cycle code needs no
counters of its own. Pub/sub is at-most-once: events published while this subscription is
reconnecting to Redis are not counted (`lookout_worker_metrics_reconnects_total` says when).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

from prometheus_client import Counter, Gauge, Histogram

from shared.bus import Subscription
from shared.keys import Keys
from shared.messages import (
    AnyMessage,
    CycleEvent,
    CycleFailed,
    CycleFinished,
    CycleFirstChunk,
    CycleInterrupted,
    CycleSkipped,
)
from shared.metrics import MetricSet
from shared.settings import Settings
from shared.source_subscriptions import SourceSubscriptions, registered_sources

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60)


def reason_label(reason: str) -> str:
    """A bounded label for a skip reason: its leading words ("scene changed 0.4 < ..." ->
    "scene_changed"), so numbers in the text do not make a new series each time."""
    words = re.match(r"[A-Za-z_ ]*", reason)
    lead = "_".join((words.group(0) if words else "").lower().split()[:3])
    return lead or "other"


class WorkerMetrics(MetricSet):
    """Histograms and counters fed by one worker's cycle events."""

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.cycle = Histogram(
            "lookout_worker_cycle_seconds",
            "Duration of a commentary or answer, engine start to last chunk",
            ["kind", "status"],
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.first_chunk = Histogram(
            "lookout_worker_first_chunk_seconds",
            "Newest frame's capture to the first chunk of words",
            ["kind"],
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.skips = Counter(
            "lookout_worker_skips", "Cycles skipped, by reason", ["reason"], registry=r
        )
        self.failures = Counter("lookout_worker_failures", "Cycles the engine failed", registry=r)
        self.tokens = Counter(
            "lookout_worker_tokens", "Tokens (words, for the CPU engine) produced", registry=r
        )
        self.tokens_per_second = Gauge(
            "lookout_worker_tokens_per_second",
            "Tokens per second of the last finished cycle, per source",
            ["source"],
            registry=r,
        )
        self.reconnects = Counter(
            "lookout_worker_metrics_reconnects",
            "Reconnects of the event subscription (events meanwhile are not counted)",
            registry=r,
        )

    def observe(self, source: str, event: CycleEvent) -> None:
        """Count one of this worker's cycle events."""
        if isinstance(event, CycleFirstChunk):
            self.first_chunk.labels(event.kind).observe(event.latency_ms / 1000)
        elif isinstance(event, CycleFinished | CycleInterrupted):
            self.cycle.labels(event.kind, event.event).observe(event.duration_ms / 1000)
            self.tokens.inc(event.tokens)
            if isinstance(event, CycleFinished) and event.duration_ms > 0:
                rate = event.tokens / (event.duration_ms / 1000)
                self.tokens_per_second.labels(source).set(rate)
        elif isinstance(event, CycleSkipped):
            self.skips.labels(reason_label(event.reason)).inc()
        elif isinstance(event, CycleFailed):
            self.failures.inc()


class MetricsFeed:
    """This worker's /metrics server and the subscription that feeds it."""

    def __init__(self, settings: Settings, worker_id: str) -> None:
        """Start serving SERVER_HOST:WORKER_METRICS_PORT; OSError when the port is taken."""
        self.metrics = WorkerMetrics()
        self.worker_id = worker_id
        self.keys = Keys(settings.key_prefix)
        self.server = self.metrics.serve(settings.server_host, settings.worker_metrics_port)
        self.settings = settings
        self.subscription = Subscription(
            settings.redis_url,
            patterns=[self.keys.events_channel("*")],
            on_reconnect=self._reconnected,
        )

    async def _reconnected(self) -> None:
        self.metrics.reconnects.inc()

    async def run(self) -> None:
        """Count this worker's cycle events until cancelled."""
        if self.settings.redis_cluster:  # no pattern in sharded pub/sub: follow the registry
            self.subscription.connected.set()  # nothing to confirm: sources join as found
            async with registered_sources(self.settings.redis_url, self.keys) as names:
                await self._count(
                    SourceSubscriptions(
                        self.settings.redis_url,
                        lambda source: [self.keys.events_channel(source)],
                        names,
                        on_reconnect=self._reconnected,
                    ).messages()
                )
        else:
            await self._count(self.subscription.messages())

    async def _count(self, messages: AsyncIterator[tuple[str, AnyMessage]]) -> None:
        async for channel, message in messages:
            if isinstance(message, CycleEvent) and message.worker == self.worker_id:
                self.metrics.observe(self.keys.source_from_channel(channel), message)

    def close(self) -> None:
        self.server.close()
