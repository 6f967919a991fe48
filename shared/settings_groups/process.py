"""Every process: logging, worker id, metrics ports."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings_groups import var

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class ProcessSettings:
    """The `process` group of `Settings`, its variables in the order the docs list them."""

    log_level: str = var("INFO", "Log level", "process", choices=LOG_LEVELS)
    log_format: str = var(
        "text",
        "Log lines as `time level role: message` (text) or one JSON object per line (json: ts, "
        "level, role, logger, message, exc) for log collectors",
        "process",
        choices=LOG_FORMATS,
    )
    worker_id: str = var(
        "", "Name of this worker in leases and status (empty: host-pid)", "process"
    )
    worker_metrics_port: int = var(
        0,
        "Port where a worker serves Prometheus metrics at /metrics, on SERVER_HOST (0: off)",
        "process",
        lo=0,
        hi=65535,
    )
    producer_metrics_port: int = var(
        0,
        "Port where a producer (or supervisor) serves Prometheus metrics at /metrics, on "
        "SERVER_HOST (0: off)",
        "process",
        lo=0,
        hi=65535,
    )
