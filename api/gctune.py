"""Garbage collection of an API process: start-up objects frozen, fewer and timed passes.

A process serving thousands of streams holds hundreds of thousands of long-lived objects
(connections, tasks, buffers). With Python's default thresholds a full collection walked all
of them every few seconds (~100 ms each at 2,000 viewers), and the slowest messages were the
ones caught behind one: that was the p99 (docs/benchmarks.md). So after start-up everything
alive is frozen out of collections (`gc.freeze`), young collections run per 50,000
allocations instead of 700, and each pass's duration is exported
(`lookout_api_gc_seconds{generation}`) so the effect stays visible in production.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from api.metrics import ApiMetrics

GC_THRESHOLDS = (50_000, 10, 10)


def tune_gc(metrics: ApiMetrics) -> None:
    """Freeze what start-up allocated, raise the thresholds and time every pass."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    started: list[float] = [0.0]
    observe = [metrics.gc.labels(str(g)) for g in range(3)]

    def timer(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            observe[info["generation"]].observe(time.perf_counter() - started[0])

    gc.callbacks.append(timer)
