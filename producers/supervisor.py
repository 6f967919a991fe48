"""The producer supervisor (`lookout producer --supervise`): an arq worker running captures.

Each capture is a long-running, abortable arq job. Exactly one capture per source is ensured
by a claim (`Keys.producer_claim`, SET NX with TTL CLAIM_TTL, renewed by its holder). A
killed supervisor's arq job would only be retried when its in-progress key expires (a year:
the capture job's timeout), so supervisors also reconcile: any desired source whose claim
lapsed gets a fresh job, and the dead job's arq keys are removed so they never clog the queue.
A capture that crashes is restarted in place; one that cannot work (a file that cannot be
read, a URL the source policy refuses once resolved) stays in the desired sources marked with
its error, never retried, until it is stopped: the API shows why it failed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
import uuid
from typing import Any

import msgspec
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.worker import Worker, func

from producers.capture import Capture, CaptureFailed
from shared.arqpool import arq_worker
from shared.backoff import Backoff
from shared.bus import REDIS_ERRORS
from shared.claims import Claims
from shared.keys import Keys
from shared.settings import Settings
from shared.source_control import (
    CAPTURE_JOB,
    DesiredSource,
    decode_desired,
    encode_desired,
    enqueue_capture,
    get_desired,
    new_job_id,
    pending_claim_ms,
)
from shared.source_urls import SourceUrlError
from shared.urlpolicy import SourcePolicy

log = logging.getLogger(__name__)

CAPTURE_JOB_TIMEOUT_S = 365 * 24 * 3600  # a capture runs until stopped; arq needs some limit
SHUTDOWN_GRACE_S = 10.0
POLL_STOP_S = 3.0  # how long the shutdown waits for arq's cancelled poll loop


class Supervisor:
    """Runs capture jobs from the producer queue and keeps every desired source claimed."""

    def __init__(self, redis: ArqRedis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.captures: dict[str, asyncio.Event] = {}  # source -> stop event of its capture
        self.shutting_down = asyncio.Event()
        self.claims = Claims(redis, self.keys, int(settings.claim_ttl * 1000))
        self._tick = min(1.0, settings.claim_ttl / 3)
        self._workers: list[Worker] = []
        self.policy = SourcePolicy.from_settings(settings)

    # --- the arq job ---
    async def capture_job(self, ctx: dict[str, Any], name: str) -> str:
        """Capture `name` until it is stopped, superseded, or this supervisor shuts down."""
        job_id = str(ctx["job_id"])
        entry = await get_desired(self.redis, self.settings, name)
        if entry is None or entry.job_id != job_id or entry.error:
            return "superseded"  # stopped, re-started under a newer job, or failed
        owner = f"{self.id} {job_id}"
        if self.shutting_down.is_set() or name in self.captures:
            return "not started here"
        if not await self.claims.take(name, owner):
            return "claimed by another supervisor"
        stop = asyncio.Event()
        self.captures[name] = stop
        keeper = asyncio.create_task(self._keep_claim(entry, owner, stop))
        try:
            return await self._run_capture(entry, stop)
        finally:
            stop.set()
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)  # no renewal after release
            del self.captures[name]
            await self._release(name, owner)

    async def _run_capture(self, entry: DesiredSource, stop: asyncio.Event) -> str:
        backoff = Backoff(self.settings.reconnect_delay, self.settings.max_reconnect_delay)
        while not stop.is_set():
            try:
                capture = Capture(
                    self.redis,
                    self.settings,
                    entry.name,
                    entry.url,
                    entry.options,
                    stop=stop,
                    policy=self.policy,
                )
                ended = await capture.run()
            except (CaptureFailed, SourceUrlError) as exc:
                log.error("%s: %s; the source failed", entry.name, exc)
                await self._mark_failed(entry, str(exc))
                return f"failed: {exc}"
            except Exception:
                delay = backoff.next()
                log.exception("%s: capture crashed; restarting in %.1fs", entry.name, delay)
                await _wait(stop, delay)
                continue
            if ended == "finished":  # a file played once is done for good
                await self._forget(entry)
            return ended
        return "stopped"

    async def _keep_claim(self, entry: DesiredSource, owner: str, stop: asyncio.Event) -> None:
        name = entry.name
        while not stop.is_set():
            await _wait(stop, self._tick)
            try:
                held = await self.claims.renew(name, owner)
                current = await get_desired(self.redis, self.settings, name)
                if not held and not await self.claims.take(name, owner):
                    log.warning("%s: claim lost to another supervisor; stopping here", name)
                    stop.set()
                elif stop.is_set():
                    return
                elif not held and current is None:
                    # Claim and entry both gone: Redis lost its data (a restart without
                    # persistence), not a stop, which leaves our claim. Put the entry back.
                    log.warning("%s: Redis forgot this source; restoring it", name)
                    await self.redis.hsetnx(
                        self.keys.producer_desired, name, encode_desired(entry).decode()
                    )  # type: ignore[misc]
                elif current is None or current.job_id != entry.job_id:
                    log.info("%s: no longer wanted; stopping", name)
                    stop.set()
            except REDIS_ERRORS as exc:
                log.warning("%s: claim not renewed: %s", name, exc)

    async def _release(self, name: str, owner: str) -> None:
        try:
            await self.claims.release(name, owner)
        except REDIS_ERRORS as exc:
            log.warning("%s: claim not released (it expires by itself): %s", name, exc)

    async def _forget(self, entry: DesiredSource) -> None:
        raw = await self.redis.hget(self.keys.producer_desired, entry.name)  # type: ignore[misc]
        current = None if raw is None else decode_desired(raw)
        if current is not None and current.job_id == entry.job_id:
            await self.redis.hdel(self.keys.producer_desired, entry.name)  # type: ignore[misc]

    async def _mark_failed(self, entry: DesiredSource, error: str) -> None:
        raw = await self.redis.hget(self.keys.producer_desired, entry.name)  # type: ignore[misc]
        current = None if raw is None else decode_desired(raw)
        if raw is not None and current is not None and current.job_id == entry.job_id:
            failed = msgspec.structs.replace(current, error=error[:500] or "failed")
            await self.claims.replace_desired(entry.name, raw, encode_desired(failed))

    # --- takeover ---
    async def reconcile(self) -> None:
        """Give every desired source without a live claim a fresh capture job."""
        raw = await self.redis.hgetall(self.keys.producer_desired)  # type: ignore[misc]
        for field, value in raw.items():
            name = field.decode()
            entry = decode_desired(value)
            if entry is None or entry.error or name in self.captures:
                continue
            if len(self.captures) >= self.settings.max_sources_per_supervisor:
                return  # leave it to a supervisor with room
            job_id = new_job_id(name)
            if not await self.claims.mark_pending(name, job_id, pending_claim_ms(self.settings)):
                continue  # captured, or a job for it is queued
            replaced = encode_desired(_with_job(entry, job_id))
            if not await self.claims.replace_desired(name, value, replaced):
                continue  # stopped or restarted meanwhile
            await self._drop_arq_job(entry.job_id)
            log.info("%s: no live capture; enqueued %s", name, job_id)
            await enqueue_capture(self.redis, self.settings, name, job_id)

    async def _drop_arq_job(self, job_id: str) -> None:
        # The job of a dead supervisor keeps its in-progress key for the job timeout and would
        # sit at the head of the queue; remove it (a live run would see it was superseded).
        if not job_id:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.keys.producer_queue, job_id)
            pipe.delete(
                in_progress_key_prefix + job_id, job_key_prefix + job_id, retry_key_prefix + job_id
            )
            await pipe.execute()

    async def reconcile_forever(self) -> None:
        while not self.shutting_down.is_set():
            try:
                await self.reconcile()
            except REDIS_ERRORS as exc:
                log.warning("reconcile skipped: %s", exc)
            await _wait(self.shutting_down, self._tick)

    # --- the process ---
    def worker(self) -> Worker:
        return arq_worker(
            [func(self.capture_job, name=CAPTURE_JOB, timeout=CAPTURE_JOB_TIMEOUT_S, max_tries=3)],
            queue=self.keys.producer_queue,
            client=self.redis,
            health_check_key=self.keys.producer_health_check(self.id),
            handle_signals=False,  # signals only set our flag; we drain by a deadline
            allow_abort_jobs=True,
            max_jobs=self.settings.max_sources_per_supervisor + 4,
            poll_delay=0.2,
            keep_result=60,
        )

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT, then stop captures (status stopped) and exit."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.shutting_down.set)
        log.info("producer supervisor %s on queue %s", self.id, self.keys.producer_queue)
        reconciler = asyncio.create_task(self.reconcile_forever())
        await self._run_workers()
        log.info("shutting down: stopping %d captures", len(self.captures))
        await reconciler
        for worker in self._workers:
            worker.allow_pick_jobs = False
        for stop in list(self.captures.values()):
            stop.set()
        pending = [t for w in self._workers for t in w.tasks.values() if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=SHUTDOWN_GRACE_S)
        # close() cancels what is still running after the grace time; that is no error here.
        await asyncio.gather(self._workers[-1].close(), return_exceptions=True)

    async def _run_workers(self) -> None:
        # arq's poll loop dies when Redis goes away; captures it started keep running, and a
        # new worker takes new jobs once Redis is back.
        backoff = Backoff(self.settings.reconnect_delay, self.settings.max_reconnect_delay)
        while not self.shutting_down.is_set():
            worker = self.worker()
            self._workers.append(worker)
            started = time.monotonic()
            polling = asyncio.create_task(worker.async_run())
            stopping = asyncio.create_task(self.shutting_down.wait())
            await asyncio.wait({polling, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not polling.done():
                polling.cancel()
                # arq's poll loop ends at its next await; it must never hold up the drain.
                await asyncio.wait({polling}, timeout=POLL_STOP_S)
                if not polling.done():
                    log.warning(
                        "arq's poll loop did not stop in %.0fs; draining anyway", POLL_STOP_S
                    )
                return
            error = polling.exception() if not polling.cancelled() else None
            if time.monotonic() - started > self.settings.max_reconnect_delay:
                backoff.reset()  # it had been working: start the delays over
            delay = backoff.next()
            log.warning("arq worker stopped (%s); restarting in %.1fs", error, delay)
            await _wait(self.shutting_down, delay)


def _with_job(entry: DesiredSource, job_id: str) -> DesiredSource:
    return DesiredSource(
        name=entry.name,
        url=entry.url,
        options=entry.options,
        job_id=job_id,
        created_at=entry.created_at,
    )


async def _wait(event: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        pass
