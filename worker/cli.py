"""`lookout worker`: comment on every active source with the engine named by ENGINE."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from shared.settings import Settings

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--worker-id",
        default="",
        help="name in leases and status (default: WORKER_ID, else host-pid)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=5.0,
        help="seconds a stopping worker lets the running cycle finish (default 5)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from worker.engines import build_engine
    from worker.engines.base import EngineError
    from worker.metrics import MetricsFeed
    from worker.service import run_worker
    from worker.status import default_worker_id

    worker_id = args.worker_id or settings.worker_id or default_worker_id()
    feed = None
    if settings.worker_metrics_port:
        try:  # before anything else starts: a taken port is a clear error, not a half-up worker
            feed = MetricsFeed(settings, worker_id)
        except OSError as exc:
            log.error(
                "WORKER_METRICS_PORT %d on %s: %s",
                settings.worker_metrics_port,
                settings.server_host,
                exc,
            )
            return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)  # signals only set a flag
        engine = build_engine(settings)
        counting = asyncio.create_task(feed.run()) if feed else None
        if feed is not None:
            with contextlib.suppress(TimeoutError):  # without Redis the worker waits anyway
                async with asyncio.timeout(5):
                    await feed.subscription.connected.wait()
            log.info(
                "metrics on http://%s:%d/metrics",
                settings.server_host,
                settings.worker_metrics_port,
            )
        try:
            await run_worker(settings, engine, stop=stop, worker_id=worker_id, grace=args.grace)
        finally:
            if counting is not None:
                counting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await counting

    try:
        asyncio.run(main())
    except EngineError as exc:
        log.error("engine %s cannot run: %s", settings.engine, exc)
        return 1
    finally:
        if feed is not None:
            feed.close()
    return 0
