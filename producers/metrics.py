"""Prometheus metrics of one producer process, served on PRODUCER_METRICS_PORT at /metrics.

One process captures one source (`lookout producer --source`) or many (`--supervise`); every
capture in it counts into the process's one `METRICS`, labelled by source. Frames read from
the source (`frames_read`) are either published (`frames_published`) or dropped with a reason:
`not_due` (read faster than DISPLAY_FPS, as a camera that sends 30 fps does) or `redis` (the
bus was down). Reads that gave no frame count as `read_failures`; `reconnects` counts each
back-off; `fps` is what the status hash also says (frames published a second over 5 s).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from shared.metrics import MetricSet, MetricsServer
from shared.settings import Settings


class ProducerMetrics(MetricSet):
    """Counters and gauges of every capture in this process."""

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.frames_read = Counter(
            "lookout_producer_frames_read", "Frames read from the source", ["source"], registry=r
        )
        self.frames_published = Counter(
            "lookout_producer_frames_published",
            "Frames appended to the source's frames stream",
            ["source"],
            registry=r,
        )
        self.frames_dropped = Counter(
            "lookout_producer_frames_dropped",
            "Frames read but not published: not_due (faster than DISPLAY_FPS), redis (bus down)",
            ["source", "reason"],
            registry=r,
        )
        self.read_failures = Counter(
            "lookout_producer_read_failures", "Reads that gave no frame", ["source"], registry=r
        )
        self.reconnects = Counter(
            "lookout_producer_reconnects",
            "Times the capture backed off to reopen the source",
            ["source"],
            registry=r,
        )
        self.fps = Gauge(
            "lookout_producer_fps",
            "Frames published per second over the last 5 seconds",
            ["source"],
            registry=r,
        )
        self.live = Gauge(
            "lookout_producer_live", "1 while the source is live, else 0", ["source"], registry=r
        )


METRICS = ProducerMetrics()  # the process's one set: every capture counts here


def serve(settings: Settings) -> MetricsServer:
    """Serve METRICS on SERVER_HOST:PRODUCER_METRICS_PORT; OSError when the port is taken."""
    return METRICS.serve(settings.server_host, settings.producer_metrics_port)
