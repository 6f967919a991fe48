"""The client half of supervised sources: what the API calls for POST/DELETE /api/sources.

The truth is the "desired sources" hash (`Keys.producer_desired`): name -> `DesiredSource`
(url, options, and the id of the arq job meant to capture it). Starting a source writes it
there and enqueues that job on `Keys.producer_queue`; stopping removes it and aborts the job.
Supervisors run the jobs and take over sources whose claim lapsed (producers/supervisor.py).
A source that cannot work (a policy refusal, an unreadable file) stays in the hash with its
`error`, so the API can show why, until it is stopped.
"""

from __future__ import annotations

import time
import uuid

import msgspec
import redis.asyncio as aioredis
from arq.connections import ArqRedis

from shared.arqpool import arq_client as shared_arq_client
from shared.cluster import refuse_in_cluster
from shared.keys import Keys, validate_source_name
from shared.producer_status import read_producer_status
from shared.settings import Settings
from shared.source_urls import SourceOptions, parse_source_url
from shared.sources import SourceRegistry
from shared.urlpolicy import SourcePolicy, check_source_url

CAPTURE_JOB = "capture_source"
ACTIVE_STATES = ("connecting", "live", "reconnecting")


class SourceExists(Exception):
    """The source is already running or wanted (HTTP 409)."""


class UnknownSource(Exception):
    """No supervised source by that name (HTTP 404)."""


class DesiredSource(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of the desired-sources hash."""

    name: str
    url: str
    options: SourceOptions = msgspec.field(default_factory=SourceOptions)
    job_id: str = ""
    created_at: float = 0.0
    error: str = ""  # set by the supervisor when the source failed for good; not retried


def encode_desired(entry: DesiredSource) -> bytes:
    return msgspec.json.encode(entry)


def decode_desired(raw: bytes | str) -> DesiredSource | None:
    """The entry in `raw`, or None if it is not a valid one (a hand-edited or older record)."""
    try:
        return msgspec.json.decode(raw, type=DesiredSource)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        return None


def new_job_id(name: str) -> str:
    """A fresh capture job id; unique, so a source can be started again after a stop."""
    return f"capture:{name}:{uuid.uuid4().hex[:12]}"


def arq_client(redis: aioredis.Redis, settings: Settings) -> ArqRedis:
    """An arq client (msgpack) sharing `redis`'s connection pool, which must not decode responses.
    ClusterUnsupported on a Redis Cluster."""
    refuse_in_cluster(redis, "capturing sources through supervisors")
    return shared_arq_client(redis.connection_pool, Keys(settings.key_prefix).producer_queue)


async def enqueue_capture(
    redis: aioredis.Redis, settings: Settings, name: str, job_id: str
) -> None:
    """Put the capture job of `name` on the producer queue."""
    await arq_client(redis, settings).enqueue_job(CAPTURE_JOB, name, _job_id=job_id)


async def start_source(
    redis: aioredis.Redis,
    settings: Settings,
    name: str,
    url: str,
    options: SourceOptions | None = None,
) -> str:
    """Ask the supervisors to capture `url` as source `name`; returns the capture job id.

    Raises SourceNameError (bad name), SourceUrlError (bad or unsupported URL),
    SourcePolicyError (a URL the source policy refuses, checked lexically: nothing is looked up
    here), SourceExists (already wanted, failed and not yet removed, or captured by a standalone
    producer), ClusterUnsupported on a Redis Cluster (before anything is written).
    """
    refuse_in_cluster(redis, "capturing sources through supervisors")
    validate_source_name(name)
    parse_source_url(url)
    check_source_url(url, SourcePolicy.from_settings(settings))
    keys = Keys(settings.key_prefix)
    status = await read_producer_status(redis, settings, name)
    if status is not None and status.state in ACTIVE_STATES:
        raise SourceExists(
            f"source {name!r} is already captured (producer pid {status.pid} "
            f"on {status.host}, {status.state})"
        )
    job_id = new_job_id(name)
    await redis.delete(keys.removed(name))  # wanted again: feeders may register it
    entry = DesiredSource(
        name=name,
        url=url,
        options=options or SourceOptions(),
        job_id=job_id,
        created_at=time.time(),
    )
    if not await redis.hsetnx(keys.producer_desired, name, encode_desired(entry).decode()):  # type: ignore[misc]
        current = await get_desired(redis, settings, name)
        if current is not None and current.error:
            raise SourceExists(f"source {name!r} failed ({current.error}); remove it first")
        raise SourceExists(f"source {name!r} is already running")
    # A pending claim keeps supervisors from starting a second job before this one is picked up.
    await redis.set(
        keys.producer_claim(name), f"pending {job_id}", nx=True, px=pending_claim_ms(settings)
    )
    await enqueue_capture(redis, settings, name, job_id)
    return job_id


def pending_claim_ms(settings: Settings) -> int:
    """How long a queued capture job may wait to be picked up before supervisors re-enqueue."""
    return int(settings.claim_ttl * 3000)


async def stop_source(redis: aioredis.Redis, settings: Settings, name: str) -> None:
    """Stop capturing `name`: forget it and abort its job. Raises UnknownSource."""
    keys = Keys(settings.key_prefix)
    raw = await redis.hget(keys.producer_desired, name)  # type: ignore[misc]
    if raw is None or not await redis.hdel(keys.producer_desired, name):  # type: ignore[misc]
        raise UnknownSource(f"no running source named {name!r}")
    entry = decode_desired(raw)
    if entry is not None and entry.job_id:
        # The capture also notices the missing entry within a second; the abort is quicker.
        await redis.zadd(keys.arq_abort, {entry.job_id: int(time.time() * 1000)})


REMOVED_TTL_S = 60  # how long feeders of a deleted source keep being told to stop


async def remove_source(redis: aioredis.Redis, settings: Settings, name: str) -> bool:
    """Delete `name` wherever it comes from; False if it was neither registered nor wanted.

    A supervised source is forgotten and its job aborted; every feeder (a supervised capture,
    a standalone producer, an ingest socket) finds `Keys.removed` when it next registers (at
    most REGISTER_REFRESH_S later) and stops. The source's state, frames, lease, statistics,
    open cycle and watch rules are deleted; its history and alerts stay (trimmed by HISTORY_MAXLEN) and its
    producer status expires with its TTL.
    """
    keys = Keys(settings.key_prefix)
    registry = SourceRegistry(redis, keys, settings.default_instruction)
    wanted = await get_desired(redis, settings, name) is not None
    registered = await registry.exists(name)
    if not (wanted or registered):
        return False
    await redis.set(keys.removed(name), str(time.time()), ex=REMOVED_TTL_S)
    if wanted:
        try:
            await stop_source(redis, settings, name)
        except UnknownSource:
            pass  # stopped by a concurrent call
    await registry.remove(name)
    await redis.delete(keys.worker_stats(name), keys.open_cycle(name))
    await redis.delete(keys.rules(name), keys.rule_states(name))  # its alerts stay
    return True


async def list_desired(redis: aioredis.Redis, settings: Settings) -> list[DesiredSource]:
    """Every source the supervisors are asked to keep running, sorted by name."""
    raw = await redis.hgetall(Keys(settings.key_prefix).producer_desired)  # type: ignore[misc]
    entries = [decode_desired(value) for value in raw.values()]
    return sorted((e for e in entries if e is not None), key=lambda e: e.name)


async def get_desired(redis: aioredis.Redis, settings: Settings, name: str) -> DesiredSource | None:
    """The desired entry of `name`, or None."""
    raw = await redis.hget(Keys(settings.key_prefix).producer_desired, name)  # type: ignore[misc]
    return None if raw is None else decode_desired(raw)
