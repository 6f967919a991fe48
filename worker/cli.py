"""`lookout worker`: comment on every active source with the engine named by ENGINE."""

from __future__ import annotations

import argparse
import asyncio
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
    from worker.service import run_worker

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)  # signals only set a flag
        engine = build_engine(settings)
        await run_worker(
            settings, engine, stop=stop, worker_id=args.worker_id or None, grace=args.grace
        )

    try:
        asyncio.run(main())
    except EngineError as exc:
        log.error("engine %s cannot run: %s", settings.engine, exc)
        return 1
    return 0
