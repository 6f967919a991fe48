"""arq for every Lookout queue (asks, captures), with msgpack instead of arq's default pickle.

arq pickles jobs and results unless told otherwise, and unpickling runs code: whoever can
write a queue key would run it in every worker and supervisor. Every arq client and worker in
Lookout is built here, so no queue can be left on pickle. A job that is not msgpack (a
pickle, say) fails arq's deserialization: it is logged and recorded as failed, never run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack
from arq.connections import ArqRedis
from arq.jobs import Job
from arq.worker import Function, Worker
from redis.asyncio import ConnectionPool


class JobFormatError(ValueError):
    """Bytes on a queue that are not a msgpack job or result (e.g. a pickle)."""


def serialize_job(obj: dict[str, Any]) -> bytes:
    """msgpack bytes of an arq job or result (arq calls this)."""
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def deserialize_job(data: bytes) -> dict[str, Any]:
    """The arq job or result in `data`; JobFormatError unless it is a msgpack map."""
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise JobFormatError(f"not a msgpack job: {exc}") from None
    if not isinstance(obj, dict):
        raise JobFormatError(f"not a msgpack job: a {type(obj).__name__}, expected a map")
    return obj


def arq_client(pool: ConnectionPool, queue: str) -> ArqRedis:
    """An arq client on `pool` (which must not decode responses) enqueueing on `queue`."""
    return ArqRedis(
        pool_or_conn=pool,
        job_serializer=serialize_job,
        job_deserializer=deserialize_job,
        default_queue_name=queue,
    )


def job_handle(job_id: str, client: ArqRedis, queue: str) -> Job:
    """arq's `Job` for reading the status and result of `job_id` on `queue`."""
    return Job(job_id, client, _queue_name=queue, _deserializer=deserialize_job)


def arq_worker(
    functions: Sequence[Function], *, queue: str, client: ArqRedis, **options: Any
) -> Worker:
    """An arq worker of `queue` reading and writing msgpack; `options` go to arq's Worker."""
    return Worker(
        functions=functions,
        queue_name=queue,
        redis_pool=client,
        job_serializer=serialize_job,
        job_deserializer=deserialize_job,
        **options,
    )
