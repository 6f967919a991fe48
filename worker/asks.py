"""One-off questions about a source ("ask"), carried by arq on `Keys.worker_queue`.

The API enqueues with `enqueue_ask` and reads back with `ask_status`; every worker process
runs an arq worker (max_jobs=1) in the event loop of its commentary loop. Whichever worker
picks a question answers it, on the source's current window: the window it keeps if it
holds the source, else one built from the tail of the frames stream. The answer goes through
the same engine lock as commentary, so it runs between two cycles and never beside another
model call. It streams on the source's channels as `kind="answer"` with the job id and the
question, lands in the history stream, and is the job's result. Jobs are msgpack, never pickle
(`shared.arqpool`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import msgspec
import redis.asyncio as aioredis
from arq.connections import ArqRedis
from arq.jobs import JobStatus
from arq.worker import Worker, func
from redis.asyncio import ConnectionPool

from shared.arqpool import arq_client, arq_worker, job_handle
from shared.bus import REDIS_ERRORS
from shared.keys import Keys, validate_source_name
from shared.settings import Settings
from worker.cycle import Ask, CycleRunner
from worker.engines.base import WindowFrame

log = logging.getLogger(__name__)

ASK_FUNCTION = "ask"
KEEP_RESULT_S = 3600
JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
AskState = Literal["queued", "in_progress", "complete", "failed", "not_found"]


class AskQueueFull(Exception):
    """ASK_QUEUE_MAX questions are already waiting; try again after `retry_after` seconds."""

    def __init__(self, queued: int, retry_after: float) -> None:
        super().__init__(f"{queued} questions are already waiting; retry in {retry_after:.0f}s")
        self.queued = queued
        self.retry_after = retry_after


class AskStatus(msgspec.Struct, frozen=True):
    """What `GET /api/jobs/{id}` shows about a question."""

    job_id: str
    source: str
    question: str
    status: AskState
    answer: str | None = None
    error: str | None = None


def arq_redis(redis: aioredis.Redis, settings: Settings) -> ArqRedis:
    """An arq client on `redis`'s connection pool (which must not decode responses)."""
    return arq_client(redis.connection_pool, Keys(settings.key_prefix).worker_queue)


async def enqueue_ask(redis: aioredis.Redis, settings: Settings, source: str, question: str) -> str:
    """Queue a question about `source`; returns the job id. AskQueueFull when the queue is full.

    The check and the enqueue are two steps, so concurrent callers can overshoot the cap by
    at most their own number: the queue stays bounded. A bad source name raises
    SourceNameError, an empty or too long question (over INSTRUCTION_MAX_CHARS) ValueError.
    """
    validate_source_name(source)
    if not question.strip():
        raise ValueError("the question is empty")
    if len(question) > settings.instruction_max_chars:
        raise ValueError(
            f"the question has {len(question)} characters; "
            f"INSTRUCTION_MAX_CHARS allows {settings.instruction_max_chars}"
        )
    queue = Keys(settings.key_prefix).worker_queue
    queued = int(await redis.zcard(queue))
    if queued >= settings.ask_queue_max:
        # Roughly when one queued question will have been answered.
        raise AskQueueFull(
            queued, retry_after=float(max(1, min(30, round(settings.ask_timeout / 4))))
        )
    job = await arq_redis(redis, settings).enqueue_job(
        ASK_FUNCTION, source, question, _queue_name=queue
    )
    if job is None:  # only with a caller-chosen id, which this function never passes
        raise RuntimeError("arq refused the job")
    return job.job_id


async def ask_status(redis: aioredis.Redis, settings: Settings, job_id: str) -> AskStatus | None:
    """Status and answer of a question, or None when `job_id` is unknown (or expired)."""
    if not JOB_ID_RE.fullmatch(job_id):
        return None
    queue = Keys(settings.key_prefix).worker_queue
    job = job_handle(job_id, arq_redis(redis, settings), queue)
    state = await job.status()
    info = await job.info()
    if state == JobStatus.not_found or info is None:
        return None
    source, question = (str(a) for a in (list(info.args) + ["", ""])[:2])
    base = {"job_id": job_id, "source": source, "question": question}
    if state in (JobStatus.queued, JobStatus.deferred):
        return AskStatus(**base, status="queued")
    if state == JobStatus.in_progress:
        return AskStatus(**base, status="in_progress")
    result = getattr(info, "result", None)
    if getattr(info, "success", False) and isinstance(result, dict) and "answer" in result:
        return AskStatus(**base, status="complete", answer=str(result["answer"]))
    error = result.get("error") if isinstance(result, dict) else result
    return AskStatus(**base, status="failed", error=str(error))


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
        """Answer `question` on the current window of `source`; the job result as a map."""
        frames = await self._window_for(source)
        if not frames:
            return {"error": f"no frames from source {source!r} to answer from", "source": source}
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
        if outcome.status == "finished":
            return {"answer": outcome.text, "source": source, "cycle": outcome.cycle}
        if outcome.status == "interrupted":
            why = f"no full answer within ASK_TIMEOUT={self._settings.ask_timeout:g}s or cut off"
            return {"error": why, "partial": outcome.text, "cycle": outcome.cycle}
        return {"error": outcome.error, "cycle": outcome.cycle}


async def _ask_job(ctx: dict[str, Any], source: str, question: str) -> dict[str, str]:
    handler: AskHandler = ctx["handler"]
    return await handler.answer(str(ctx["job_id"]), source, question)


async def run_ask_worker(
    settings: Settings, handler: AskHandler, stop: asyncio.Event, grace: float = 5.0
) -> None:
    """Run arq's worker for the ask queue until `stop`, restarting it after Redis outages."""
    delay = 0.5
    while not stop.is_set():
        queue = Keys(settings.key_prefix).worker_queue
        pool = arq_client(ConnectionPool.from_url(settings.redis_url), queue)
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
        await asyncio.wait({main, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if main.done() and not stop.is_set():
            exc = main.exception() if not main.cancelled() else None
            if exc is not None and not isinstance(exc, REDIS_ERRORS):
                log.error("ask worker stopped: %r; restarting", exc)
            else:
                log.warning("ask worker lost Redis (%s); restarting in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        await _stop_worker(worker, main, handler, grace)
        try:
            await pool.aclose(close_connection_pool=True)
        except REDIS_ERRORS:
            pass


async def _stop_worker(
    worker: Worker, main: asyncio.Task[None], handler: AskHandler, grace: float
) -> None:
    """Stop picking jobs, let the running one end (cut off at once), then cancel the rest."""
    worker.allow_pick_jobs = False
    handler.cancel_all()
    running = [t for t in worker.tasks.values() if not t.done()]
    if running:
        await asyncio.wait(running, timeout=grace)
    main.cancel()
    for task in worker.tasks.values():
        task.cancel()
    await asyncio.gather(main, *worker.tasks.values(), return_exceptions=True)
