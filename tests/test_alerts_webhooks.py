"""Webhook delivery of `lookout alerts` (the delivery run in-process on a real Redis, real HTTP
receivers): a slow or busy endpoint never holds up others, refusals and endless failures are
dead-lettered and shown in the status, addresses the policy refuses get no request, and
queued jobs survive a restart of the delivery process."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis

from alerts.service import Delivery
from alerts.webhook_queue import backoff
from shared.alerts import alert_id, record_alert
from shared.delivery import delivery_overview
from shared.keys import Keys
from shared.messages import AlertEvent
from shared.rules import Rule, RuleStore
from shared.settings import Settings
from shared.settings_env import load_settings
from tests.alerts_support import Receiver, verify
from tests.worker_support import until

SECRET = "s3cret"


def settings_for(test_env: dict[str, str], **extra: str) -> Settings:
    env = {
        **test_env,
        "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_ALLOW_LOOPBACK": "true",
        "WEBHOOK_BACKOFF_MAX": "0.3",
        "WEBHOOK_TIMEOUT": "20",
        **extra,
    }
    return load_settings(env, env_file=None)


@contextlib.asynccontextmanager
async def delivering(settings: Settings, name: str = "d1") -> AsyncIterator[Delivery]:
    stop = asyncio.Event()
    delivery = Delivery(settings, name)
    task = asyncio.create_task(delivery.run(stop))
    try:
        yield delivery
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def fire(
    redis: aioredis.Redis, keys: Keys, source: str, url: str, n: int = 1, rule_id: str = ""
) -> AlertEvent:
    """A rule with webhook `url` on `source`, and one alert of it in the alerts stream."""
    rule = Rule(
        id=rule_id or f"r{n}", name=f"rule {n}", condition="a person is visible", webhook=url
    )
    await RuleStore(redis, keys).put(source, rule)
    event = AlertEvent(
        source=source,
        alert_id=alert_id(rule.id, f"w1-abc-{n}"),
        state="fired",
        rule_id=rule.id,
        rule=rule.name,
        condition=rule.condition,
        cycle=f"w1-abc-{n}",
        frame_seqs=[n, n + 1],
        text="One person is visible.",
    )
    await record_alert(redis, keys, event, b"", maxlen=100, snapshot_ttl=60)
    return event


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    for attempts, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (10, 30.0)]:
        delays = [backoff(attempts, 30.0) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jitter: not all at the same moment


async def test_a_slow_endpoint_and_a_busy_host_hold_up_nobody_else(
    test_env: dict[str, str], redis_client: aioredis.Redis, keys: Keys
) -> None:
    slow, fast = Receiver().start(), Receiver().start()
    settings = settings_for(test_env, WEBHOOK_PER_HOST="1")
    try:
        async with delivering(settings):
            # Two alerts to the slow endpoint on "localhost": one in flight holds that host.
            await fire(redis_client, keys, "cam1", f"http://localhost:{slow.port}/slow", 1)
            await until(slow.slow_started.is_set)
            await fire(redis_client, keys, "cam1", f"http://localhost:{slow.port}/slow", 2)
            # Another host, another source: delivered while the slow one is still held.
            quick = await fire(redis_client, keys, "cam2", fast.url(), 3)
            await until(lambda: len(fast.ok()) == 1)
            assert not slow.deliveries and fast.ok()[0]["alert_id"] == quick.alert_id
            jobs = await redis_client.hvals(keys.webhook_jobs)  # type: ignore[misc]
            assert all(b'"attempts":0' in job for job in jobs)  # waiting is not a failed try
            slow.hold.set()
            await until(lambda: len(slow.ok("/slow")) == 2)
    finally:
        slow.hold.set()
        slow.stop()
        fast.stop()


async def test_refused_and_never_answered_webhooks_are_dead_lettered_and_shown(
    test_env: dict[str, str], redis_client: aioredis.Redis, keys: Keys
) -> None:
    refusing = Receiver(answer=400).start()
    down = Receiver()  # never started
    settings = settings_for(test_env, WEBHOOK_RETRY_FOR="1")
    try:
        async with delivering(settings):
            refused = await fire(redis_client, keys, "cam", refusing.url(), 1)
            lost = await fire(redis_client, keys, "cam", down.url(), 2)

            async def both_dead() -> bool:
                return (await delivery_overview(redis_client, keys)).webhooks_dead == 2

            await until(both_dead)
            status = await delivery_overview(redis_client, keys)
            letters = {d.alert_id: d for d in status.dead_letters}
            assert letters[refused.alert_id].attempts == 1  # a 4xx is not retried
            assert letters[refused.alert_id].last_error == "HTTP 400"
            assert (
                letters[lost.alert_id].attempts >= 2
                and "Connect" in letters[lost.alert_id].last_error
            )
            assert status.webhooks_queued == 0 and [p.delivery for p in status.processes] == ["d1"]
            assert len(refusing.deliveries) == 1
            assert verify(SECRET, refusing.deliveries[0].headers, refusing.deliveries[0].body)
    finally:
        refusing.stop()


async def test_refused_addresses_and_a_missing_secret_send_nothing(
    test_env: dict[str, str], redis_client: aioredis.Redis, keys: Keys
) -> None:
    receiver = Receiver().start()
    try:
        # Rules written past the API (or names that resolve elsewhere since): checked again.
        async with delivering(settings_for(test_env, WEBHOOK_ALLOW_LOOPBACK="false")):
            await fire(redis_client, keys, "cam", receiver.url(), 1)
            await fire(redis_client, keys, "cam", "http://169.254.169.254/latest/meta-data", 2)
            await fire(redis_client, keys, "cam", "http://[::ffff:127.0.0.1]:1/x", 3)

            async def dead() -> bool:
                return (await delivery_overview(redis_client, keys)).webhooks_dead == 3

            await until(dead)
            errors = sorted(
                d.last_error for d in (await delivery_overview(redis_client, keys)).dead_letters
            )
            assert any("(loopback)" in e for e in errors) and any("(metadata)" in e for e in errors)
        async with delivering(settings_for(test_env, WEBHOOK_SECRET="")):
            await fire(redis_client, keys, "cam", receiver.url(), 4)

            async def unsigned_dead() -> bool:
                return (await delivery_overview(redis_client, keys)).webhooks_dead == 4

            await until(unsigned_dead)
        assert receiver.deliveries == []
    finally:
        receiver.stop()


async def test_queued_webhooks_and_unread_alerts_survive_a_restart(
    test_env: dict[str, str], redis_client: aioredis.Redis, keys: Keys
) -> None:
    receiver = Receiver()  # down at first
    settings = settings_for(test_env)
    try:
        async with delivering(settings, "d1"):
            early = await fire(redis_client, keys, "cam", receiver.url(), 1)

            async def tried() -> bool:
                jobs = await redis_client.hvals(keys.webhook_jobs)  # type: ignore[misc]
                return bool(jobs) and b'"attempts":0' not in jobs[0]

            await until(tried)
        # Stopped: an alert made now waits in the stream, the first in the queue.
        late = await fire(redis_client, keys, "cam", receiver.url(), 2)
        receiver.start()
        async with delivering(settings, "d2"):
            await until(lambda: len(receiver.ok()) == 2)

            async def drained() -> bool:
                return await redis_client.zcard(keys.webhook_due) == 0

            await until(drained)
        got = sorted(body["alert_id"] for body in receiver.ok())
        assert got == sorted([early.alert_id, late.alert_id])
        assert await redis_client.zcard(keys.webhook_due) == 0
    finally:
        receiver.stop()


def test_the_verification_snippet_in_the_docs_accepts_a_signature_and_nothing_else() -> None:
    from alerts.webhooks import signature
    from tests.helpers import REPO

    text = (REPO / "docs" / "alerts.md").read_text()
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict[str, Any] = {}
    exec(snippet, scope)  # the docs' code, as a receiver would paste it
    body, stamp = b'{"alert_id": "a1"}', str(int(time.time()))
    signed = {"x-lookout-timestamp": stamp, "x-lookout-signature": signature(SECRET, stamp, body)}
    assert scope["verify"](SECRET, signed, body)
    assert not scope["verify"](SECRET, signed, body + b" ")
    assert not scope["verify"]("other", signed, body)
    old = str(int(time.time()) - 3600)
    stale = {"x-lookout-timestamp": old, "x-lookout-signature": signature(SECRET, old, body)}
    assert not scope["verify"](SECRET, stale, body)
