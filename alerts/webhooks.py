"""Webhook delivery: signed POSTs from the Redis queue, each endpoint held to its own slots.

Every request carries the alert as JSON and these headers:
- `X-Lookout-Timestamp`: Unix seconds when this try was sent;
- `X-Lookout-Signature`: `sha256=` + hex HMAC-SHA256 of `TIMESTAMP.BODY` with WEBHOOK_SECRET
  (receivers recompute it, compare in constant time and refuse old timestamps);
- `Idempotency-Key`: the alert id, the same on every try (delivery is at least once).
A 2xx answer ends the job; 408, 429, 5xx, timeouts and connection errors are retried with
backoff; any other answer, or an address the policy refuses, dead-letters it at once.

A slow endpoint never delays others: each job is its own task, at most WEBHOOK_PER_HOST of them
per host (a job for a busy host goes back to the queue for a moment), WEBHOOK_CONCURRENCY in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections import Counter
from urllib.parse import urlsplit

import httpx

from alerts.webhook_queue import WebhookQueue, backoff
from shared.bus import REDIS_ERRORS
from shared.delivery import WebhookJob, short_url
from shared.rules import webhook_policy
from shared.settings import Settings
from shared.urlpolicy import SourcePolicyError, check_source_url

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 425, 429})
BUSY_HOST_DELAY_S = 0.25
IDLE_POLL_S = 0.2


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Lookout-Signature` value of `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def headers(secret: str, job: WebhookJob, now: float) -> dict[str, str]:
    timestamp = str(int(now))
    return {
        "Content-Type": "application/json",
        "User-Agent": "lookout-alerts/1",
        "Idempotency-Key": job.alert_id,
        "X-Lookout-Timestamp": timestamp,
        "X-Lookout-Signature": signature(secret, timestamp, job.body.encode()),
        "X-Lookout-Attempt": str(job.attempts + 1),
    }


class PermanentFailure(Exception):
    """Retrying cannot help: the endpoint refused the alert, or the policy refuses it."""


class WebhookSender:
    """Claims due jobs and sends each in its own task."""

    def __init__(self, settings: Settings, queue: WebhookQueue) -> None:
        self.settings = settings
        self.queue = queue
        self.policy = webhook_policy(settings)
        self.in_flight: Counter[str] = Counter()  # per host
        self.tasks: set[asyncio.Task[None]] = set()
        self.delivered = self.retried = self.dead = 0
        self._client = httpx.AsyncClient(
            timeout=settings.webhook_timeout,
            follow_redirects=False,  # a redirect could lead past the address policy
            trust_env=False,  # no proxy from the environment between us and the endpoint
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and send until `stop`; then wait briefly for the sends in flight."""
        while not stop.is_set():
            free = self.settings.webhook_concurrency - len(self.tasks)
            jobs: list[WebhookJob] = []
            try:
                jobs = await self.queue.claim(free) if free > 0 else []
            except REDIS_ERRORS as exc:
                log.warning("webhook queue unreachable: %s", exc)
            for job in jobs:
                await self._start(job)
            if not jobs:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), IDLE_POLL_S)
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=self.settings.webhook_timeout)
        await self._client.aclose()

    async def _start(self, job: WebhookJob) -> None:
        host = urlsplit(job.url).hostname or ""
        if self.in_flight[host] >= self.settings.webhook_per_host:
            await self.queue.later(job, BUSY_HOST_DELAY_S)  # not a try: no attempt counted
            return
        self.in_flight[host] += 1
        task = asyncio.create_task(self._deliver(job, host))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deliver(self, job: WebhookJob, host: str) -> None:
        try:
            await self._try(job)
        except REDIS_ERRORS as exc:  # the claim runs out and the job is due again
            log.warning("webhook %s: Redis failed after the try: %s", job.id, exc)
        finally:
            self.in_flight[host] -= 1

    async def _try(self, job: WebhookJob) -> None:
        now = time.time()
        try:
            await self._post(job, now)
        except PermanentFailure as exc:
            self._failed(job, now, str(exc))
            self.dead += 1
            log.error("webhook %s to %s dead-lettered: %s", job.id, short_url(job.url), exc)
            await self.queue.dead(job)
            return
        except (httpx.HTTPError, OSError) as exc:
            self._failed(
                job, now, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            )
            if now - job.created_at >= self.settings.webhook_retry_for:
                self.dead += 1
                log.error("webhook %s to %s dead-lettered after %d tries: %s",
                          job.id, short_url(job.url), job.attempts, job.last_error)  # fmt: skip
                await self.queue.dead(job)
                return
            delay = backoff(job.attempts, self.settings.webhook_backoff_max)
            self.retried += 1
            log.info("webhook %s to %s failed (%s); retry in %.1fs",
                     job.id, short_url(job.url), job.last_error, delay)  # fmt: skip
            await self.queue.later(job, delay)
            return
        self.delivered += 1
        await self.queue.done(job)

    def _failed(self, job: WebhookJob, now: float, error: str) -> None:
        job.attempts += 1
        job.last_error = error[:300]
        job.last_try = now

    async def _post(self, job: WebhookJob, now: float) -> None:
        if not self.settings.webhook_secret:
            raise PermanentFailure("WEBHOOK_SECRET is not set: webhooks are never sent unsigned")
        try:  # resolved now: a name may point somewhere else than when the rule was made
            await asyncio.to_thread(check_source_url, job.url, self.policy, resolve=True)
        except SourcePolicyError as exc:
            raise PermanentFailure(str(exc)) from None
        response = await self._client.post(
            job.url,
            content=job.body.encode(),
            headers=headers(self.settings.webhook_secret, job, now),
        )
        status = response.status_code
        if 200 <= status < 300:
            return
        if status in RETRY_STATUSES or status >= 500:
            raise httpx.HTTPStatusError(
                f"HTTP {status}", request=response.request, response=response
            )
        raise PermanentFailure(f"HTTP {status}")
