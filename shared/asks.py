"""The client half of one-off questions ("ask"): the job name, enqueue, and status.

The API enqueues with `enqueue_ask` and reads back with `ask_status`; workers run the arq
handler (worker/asks.py) on `Keys.worker_queue`. Jobs and results are msgpack, never pickle
(`shared.arqpool`).
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec
import redis.asyncio as aioredis
from arq.connections import ArqRedis
from arq.jobs import JobStatus

from shared.arqpool import arq_client, job_handle
from shared.cluster import refuse_in_cluster
from shared.keys import Keys, validate_source_name
from shared.record_fields import RecordError
from shared.records import AskResult
from shared.settings import Settings

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
    """An arq client on `redis`'s connection pool (which must not decode responses).
    ClusterUnsupported on a Redis Cluster."""
    refuse_in_cluster(redis, "asking questions")
    return arq_client(redis.connection_pool, Keys(settings.key_prefix).worker_queue)


async def enqueue_ask(redis: aioredis.Redis, settings: Settings, source: str, question: str) -> str:
    """Queue a question about `source`; returns the job id. AskQueueFull when the queue is full.

    The check and the enqueue are two steps, so concurrent callers can overshoot the cap by
    at most their own number: the queue stays bounded. A bad source name raises
    SourceNameError, an empty or too long question (over INSTRUCTION_MAX_CHARS) ValueError.
    """
    refuse_in_cluster(redis, "asking questions")
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
    raw = getattr(info, "result", None)
    try:  # a map from our handler; an exception (arq's timeout, a crash) is not one
        result = AskResult.from_fields(raw) if isinstance(raw, dict) else None
    except RecordError:
        result = None
    if getattr(info, "success", False) and result is not None and result.answer is not None:
        return AskStatus(**base, status="complete", answer=result.answer)
    error = result.error if result is not None else raw
    return AskStatus(**base, status="failed", error=str(error))
