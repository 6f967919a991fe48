"""The webhook queue in Redis: jobs survive restarts of `lookout alerts`, and each is sent at
least once.

A job is due at its score in `Keys.webhook_due`. A sender claims due jobs by pushing their score
to `now + CLAIM_S` in one Lua call, so two alerts processes never send one job at the same time,
and a job whose sender died is due again once its claim runs out. Success deletes it; a failure
schedules it again with backoff and jitter, or, once it has been tried for WEBHOOK_RETRY_FOR
seconds (or the endpoint refused it for good), moves it to the dead letters.
"""

from __future__ import annotations

import hashlib
import random
import time

import msgspec
import redis.asyncio as aioredis

from shared.delivery import WebhookJob, decode_job
from shared.keys import Keys

BACKOFF_FIRST_S = 1.0
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return due
"""


def job_id(alert_id: str, url: str) -> str:
    """One job per alert and URL: an alert read twice is not sent twice."""
    return f"{alert_id}@{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def backoff(attempts: int, most: float) -> float:
    """Seconds before try `attempts + 1`: doubling from 1 s up to `most`, with 'equal jitter'
    (half fixed, half random) so endpoints that come back are not hit by every job at once."""
    ceiling = min(most, BACKOFF_FIRST_S * 2 ** max(0, attempts - 1))
    return float(ceiling / 2 + random.uniform(0, ceiling / 2))


class WebhookQueue:
    """Enqueue, claim, finish, retry and dead-letter webhook jobs."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, claim_s: float) -> None:
        self._redis = redis
        self._keys = keys
        self.claim_s = claim_s
        self._claim = redis.register_script(_CLAIM)

    async def enqueue(self, job: WebhookJob) -> None:
        """Add the job unless it exists (queued or dead): enqueueing is idempotent."""
        if await self._redis.hexists(self._keys.webhook_dead, job.id):  # type: ignore[misc]
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self._keys.webhook_jobs, job.id, msgspec.json.encode(job).decode())
            pipe.zadd(self._keys.webhook_due, {job.id: job.created_at}, nx=True)
            await pipe.execute()

    async def claim(self, limit: int) -> list[WebhookJob]:
        """Up to `limit` due jobs, claimed for CLAIM_S seconds."""
        now = time.time()
        ids = await self._claim(
            keys=[self._keys.webhook_due], args=[now, now + self.claim_s, limit]
        )
        if not ids:
            return []
        raw = await self._redis.hmget(self._keys.webhook_jobs, ids)  # type: ignore[misc]
        jobs: list[WebhookJob] = []
        for ident, value in zip(ids, raw, strict=True):
            job = decode_job(value) if value is not None else None
            if job is None:  # the job's body is gone: nothing to send
                await self._redis.zrem(self._keys.webhook_due, ident)
                continue
            jobs.append(job)
        return jobs

    async def done(self, job: WebhookJob) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self._keys.webhook_due, job.id)
            pipe.hdel(self._keys.webhook_jobs, job.id)
            await pipe.execute()

    async def later(self, job: WebhookJob, delay: float) -> None:
        """Due again in `delay` seconds (the job as it is now is stored)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._keys.webhook_jobs, job.id, msgspec.json.encode(job).decode())
            pipe.zadd(self._keys.webhook_due, {job.id: time.time() + delay})
            await pipe.execute()

    async def dead(self, job: WebhookJob) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._keys.webhook_dead, job.id, msgspec.json.encode(job).decode())
            pipe.zrem(self._keys.webhook_due, job.id)
            pipe.hdel(self._keys.webhook_jobs, job.id)
            await pipe.execute()
