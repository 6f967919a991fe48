"""Prometheus metrics of one API process, served at /metrics.

Each app gets its own registry, so two apps in one process (tests) do not collide.
Request latency is measured to the start of the response: for streams that is the time
to first byte, which is what a viewer waits for.
"""

from __future__ import annotations

import time
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import MetricSet


class ApiMetrics(MetricSet):
    """The counters and gauges the relays and the latency middleware update."""

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.viewers = Gauge(
            "lookout_api_viewers", "Viewers connected to this replica", ["kind"], registry=r
        )
        self.messages = Counter(
            "lookout_api_messages_relayed", "Pub/sub messages delivered to viewers", registry=r
        )
        self.frames = Counter(
            "lookout_api_frames_relayed", "JPEG frames delivered to MJPEG viewers", registry=r
        )
        self.dropped = Counter(
            "lookout_api_dropped",
            "Messages or frames dropped for slow viewers",
            ["kind"],
            registry=r,
        )
        self.reconnects = Counter(
            "lookout_api_redis_reconnects", "Redis subscription reconnects", registry=r
        )
        self.ingested = Counter(
            "lookout_api_frames_ingested", "Frames received over the ingest WebSocket", registry=r
        )
        self.gc = Histogram(
            "lookout_api_gc_seconds",
            "Garbage-collection passes of this process, by generation",
            ["generation"],
            registry=r,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
        )
        self.latency = Histogram(
            "lookout_api_request_seconds",
            "Time to the start of the response",
            ["method", "route", "status"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )


def latency_middleware_factory(metrics: ApiMetrics) -> Any:
    """ASGI middleware observing each HTTP request's time to response start."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            started = time.perf_counter()

            async def timed_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    # The route template, not the path: one series per route, not per source.
                    route = str(scope.get("path_template") or "unmatched")
                    metrics.latency.labels(
                        scope.get("method", ""), route, str(message["status"])
                    ).observe(time.perf_counter() - started)
                await send(message)

            await app(scope, receive, timed_send)

        return wrapped

    return middleware
