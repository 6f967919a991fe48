"""The worker's half of one-off questions ("ask"): the arq handler on `Keys.worker_queue`.

The client half (job name, enqueue, status) is `shared.asks`. Every worker process runs an
arq worker (max_jobs=1) in the event loop of its commentary loop. Whichever worker picks a
question answers it, on the source's current window: the window it keeps if it holds the
source, else one built from the tail of the frames stream. The answer goes through the same
engine lock as commentary, so it runs between two cycles and never beside another model
call. It streams on the source's channels as `kind="answer"` with the job id and the
question, lands in the history stream, and is the job's result.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from arq.worker import Worker, func

from shared.arqpool import arq_client, arq_worker
from shared.asks import ASK_FUNCTION, KEEP_RESULT_S
from shared.backoff import Backoff
from shared.bus import REDIS_ERRORS, connect_pool
from shared.keys import Keys
from shared.records import AskResult
from shared.sentinel import close_sentinels
from shared.settings import Settings
from worker.cycle import Ask, CycleRunner
from worker.engines.base import WindowFrame

log = logging.getLogger(__name__)


WindowSource = Callable[[str], Awaitable[Sequence[WindowFrame]]]


class AskHandler:
    """Answers questions with the worker's engine (through its cycle runner)."""

    def __init__(self, cycles: CycleRunner, window_for: WindowSource, settings: Settings) -> None:
        self._cycles = cycles
        self._window_for = window_for
        self._settings = settings
        self._cancels: set[threading.Event] = set()
        self.answered = 0

    def cancel_all(self) -> None:
        """Cut off questions in progress (shutdown)."""
        for cancel in self._cancels:
            cancel.set()

    async def answer(self, job_id: str, source: str, question: str) -> dict[str, str]:
        """Answer `question` on the current window of `source`; the job result: an
        `AskResult` as fields (arq stores a msgpack map, never a pickle)."""
        frames = await self._window_for(source)
        if not frames:
            why = f"no frames from source {source!r} to answer from"
            return AskResult(source=source, error=why).to_fields()
        cancel = threading.Event()
        self._cancels.add(cancel)
        # The timeout counts the wait for the engine too; it ends the call as interrupted.
        timer = asyncio.get_running_loop().call_later(self._settings.ask_timeout, cancel.set)
        try:
            outcome = await self._cycles.run(
                source, frames, question, (), cancel, ask=Ask(job_id=job_id, question=question)
            )
        finally:
            timer.cancel()
            self._cancels.discard(cancel)
        self.answered += 1
        result = AskResult(source=source, cycle=outcome.cycle)
        if outcome.status == "finished":
            return replace(result, answer=outcome.text).to_fields()
        if outcome.status == "interrupted":
            why = f"no full answer within ASK_TIMEOUT={self._settings.ask_timeout:g}s or cut off"
            return replace(result, error=why, partial=outcome.text).to_fields()
        return replace(result, error=outcome.error).to_fields()


async def _ask_job(ctx: dict[str, Any], source: str, question: str) -> dict[str, str]:
    handler: AskHandler = ctx["handler"]
    return await handler.answer(str(ctx["job_id"]), source, question)


async def run_ask_worker(
    settings: Settings, handler: AskHandler, stop: asyncio.Event, grace: float = 5.0
) -> None:
    """Run arq's worker for the ask queue until `stop`, restarting it after Redis outages.
    On a Redis Cluster (no arq there) it only waits for `stop`: questions are refused."""
    if settings.redis_cluster:
        log.warning("REDIS_CLUSTER is set: arq cannot run on a cluster, so no questions (asks)")
        await stop.wait()
        return
    backoff = Backoff(0.5, 5.0)
    while not stop.is_set():
        queue = Keys(settings.key_prefix).worker_queue
        pool = arq_client(connect_pool(settings.redis_url), queue)
        worker = arq_worker(
            [func(_ask_job, name=ASK_FUNCTION, timeout=settings.ask_timeout + 30, max_tries=2)],
            queue=queue,
            client=pool,
            max_jobs=1,
            handle_signals=False,
            poll_delay=0.2,
            keep_result=KEEP_RESULT_S,
            ctx={"handler": handler},
        )
        main = asyncio.create_task(worker.main())
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({main, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if main.done() and not stop.is_set():
                exc = main.exception() if not main.cancelled() else None
                if exc is not None and not isinstance(exc, REDIS_ERRORS):
                    log.error("ask worker stopped: %r; restarting", exc)
                else:
                    log.warning("ask worker lost Redis (%s); restarting", exc)
                await asyncio.sleep(backoff.next())
            await _stop_worker(worker, main, handler, grace)
        finally:
            # Also when this task is cancelled: no arq task or Redis connection is left open.
            stopped.cancel()
            await _cancel(main, *worker.tasks.values())
            try:
                await pool.aclose(close_connection_pool=True)
                await close_sentinels(pool.connection_pool)
            except REDIS_ERRORS:
                pass


async def _cancel(*tasks: asyncio.Task[Any]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _stop_worker(
    worker: Worker, main: asyncio.Task[None], handler: AskHandler, grace: float
) -> None:
    """Stop picking jobs, let the running one end (cut off at once), then cancel the rest."""
    worker.allow_pick_jobs = False
    handler.cancel_all()
    running = [t for t in worker.tasks.values() if not t.done()]
    if running:
        await asyncio.wait(running, timeout=grace)
    await _cancel(main, *worker.tasks.values())
