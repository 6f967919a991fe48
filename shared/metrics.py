"""What every process's Prometheus metrics share: a registry of their own, and serving it.

Each set of metrics (worker, producer, API) subclasses `MetricSet` and declares its counters on
`self.registry`, so two sets in one process (tests) never collide. Workers and producers serve
theirs on a port of their own (`MetricSet.serve`); the API returns `MetricSet.exposition()`
from its /metrics route.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    generate_latest,
    start_http_server,
)


class MetricsServer:
    """A registry served at http://HOST:PORT/metrics from a thread, until `close()`."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        """Start serving; OSError when the port is taken."""
        self._server, _ = start_http_server(port, host, registry=registry)

    @property
    def port(self) -> int:
        """The port it listens on (the one asked for, or the one picked for port 0)."""
        return int(self._server.server_port)

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()


class MetricSet:
    """Base of a process's metrics: subclasses add their metrics with `registry=self.registry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()

    def serve(self, host: str, port: int) -> MetricsServer:
        """Serve these metrics on HOST:PORT at /metrics; OSError when the port is taken."""
        return MetricsServer(self.registry, host, port)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition of these metrics and its exact Content-Type header value."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
