"""Issue 18 end to end, through real processes: a rule on the CPU engine fires when a drawn
person walks into the picture and clears when they leave (exactly once each, debounced over
two windows); the webhook receiver, down when both alerts happen and for OUTAGE_S after,
gets each once, signed; Mosquitto subscribers see Home Assistant discovery and the state
changes; the page shows the alert with its snapshot in Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
import numpy as np
import pytest
import redis.asyncio as aioredis

from shared.alerts import from_fields
from shared.delivery import decode_job
from shared.keys import Keys
from shared.messages import AlertEvent
from shared.publisher import FramePublisher
from shared.settings import Settings
from shared.settings_env import load_settings
from tests.alerts_support import Mosquitto, MqttRecorder, Receiver, verify
from tests.e2e_support import SseReader
from tests.helpers import LookoutProcess
from tests.test_api_support import ApiServer
from tests.test_cpu_engine import field as grass
from tests.test_cpu_engine import silhouette
from tests.test_page import CHROMIUM, CHROMIUM_ARGS
from tests.worker_support import FAST

# How long the receiver stays down after the alert fired. The figure is 30 s; the
# logic does not depend on it, so CI uses less (set LOOKOUT_TEST_WEBHOOK_OUTAGE_S=30 to check).
OUTAGE_S = float(os.environ.get("LOOKOUT_TEST_WEBHOOK_OUTAGE_S", "4"))
SECRET = "hook-secret-for-tests"
KEY = "alerts-control-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
SOURCE = "door"


@dataclass
class Scene:
    """What the feeder draws: grass, or a person walking across it."""

    person: bool = False
    x: int = 180
    frames: int = 0

    def image(self) -> np.ndarray[Any, Any]:
        self.frames += 1
        if not self.person:
            return grass()
        self.x = 180 + (self.x - 170) % 280  # walks right, 10 px a frame, and round again
        return silhouette(grass(), self.x)


@dataclass
class Stack:
    url: str
    keys: Keys
    redis: aioredis.Redis
    settings: Settings
    receiver: Receiver
    mqtt: MqttRecorder
    scene: Scene = field(default_factory=Scene)
    processes: list[LookoutProcess] = field(default_factory=list)

    async def cycles(self) -> int:
        """Windows the engine looked at: commentaries, and those with nothing new to say."""
        stats = await self.redis.hmget(self.keys.worker_stats(SOURCE), ["cycles", "skipped"])  # type: ignore[misc]
        return sum(int(raw or 0) for raw in stats)

    async def alerts(self) -> list[AlertEvent]:
        return [from_fields(f) for _, f in await self.redis.xrange(self.keys.alerts)]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log()[-3000:]}" for p in self.processes)


async def until(check: Callable[[], Any], stack: Stack, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not in {within}s\n{stack.logs()}")
        await asyncio.sleep(0.1)


async def more_cycles(stack: Stack, count: int) -> None:
    start = await stack.cycles()

    async def done() -> bool:
        return await stack.cycles() >= start + count

    await until(done, stack, 30, f"{count} more commentaries")


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    broker = Mosquitto()
    yield broker
    broker.stop()


@pytest.fixture
async def stack(
    test_env: dict[str, str], mosquitto: Mosquitto, redis_client: aioredis.Redis
) -> AsyncIterator[Stack]:
    env = {
        **test_env,
        **FAST,
        "CHANGE_THRESHOLD": "0",  # every window is commented, so every window is decided
        "ENGINE": "cpu",
        "API_KEYS": f"{KEY}:control",
        "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_ALLOW_LOOPBACK": "true",
        "WEBHOOK_BACKOFF_MAX": "1",
        "MQTT_URL": mosquitto.url,
        "MQTT_PREFIX": "lk",
    }
    settings = load_settings(env, env_file=None)
    recorder = MqttRecorder(mosquitto.port)
    api = ApiServer(env, "api-alerts")
    worker = LookoutProcess(["worker", "--worker-id", "w1"], env, "worker-alerts")
    alerts = LookoutProcess(["alerts", "--delivery-id", "d1"], env, "alerts")
    receiver = Receiver()  # not started: the endpoint is down
    stack = Stack(api.url, Keys(settings.key_prefix), redis_client, settings, receiver, recorder)
    stack.processes = [api.proc, worker, alerts]
    publisher = FramePublisher(redis_client, settings, SOURCE)

    async def feed() -> None:
        while True:
            await publisher.publish_image(stack.scene.image())
            await asyncio.sleep(0.2)

    feeding = asyncio.create_task(feed())
    try:
        yield stack
    finally:
        feeding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeding
        for process in (worker, alerts):
            process.stop()
        api.stop()
        receiver.stop()
        recorder.stop()


@pytest.mark.slow
@pytest.mark.timeout(300)  # five processes on a loaded machine; each wait has its own limit
async def test_a_person_walking_in_and_out_fires_and_clears_once_everywhere(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url, headers=AUTH, timeout=10) as client:

        async def cpu_worker_up() -> bool:
            resp = await client.get(f"/api/sources/{SOURCE}/rules")
            return resp.status_code == 200 and resp.json()["engines"] == ["cpu"]

        await until(cpu_worker_up, stack, 60, "the CPU worker's heartbeat")
        refused = await client.post(
            f"/api/sources/{SOURCE}/rules",
            json={"name": "Door", "condition": "a person is at the door"},
        )
        assert refused.status_code == 422, refused.text
        assert "'door'" in refused.text and "a person is visible" in refused.text
        made = await client.post(
            f"/api/sources/{SOURCE}/rules",
            json={
                "name": "Someone there",
                "condition": "a person is visible",
                "fire_after": 2,
                "clear_after": 2,
                "cooldown_s": 0,
                "webhook": stack.receiver.url(),
            },
        )
        assert made.status_code == 201, made.text
        rule = made.json()
        sse = SseReader(f"{stack.url}/api/sources/{SOURCE}/events", AUTH)
        await asyncio.to_thread(sse.ready.wait, 10)

        await more_cycles(stack, 3)  # grass only: nothing fires
        assert await stack.alerts() == []
        stack.scene.person = True

        async def fired() -> bool:
            return [a.state for a in await stack.alerts()] == ["fired"]

        await until(fired, stack, 30, "the rule firing")
        fired_at = time.monotonic()
        await more_cycles(stack, 3)  # still there: no second alert
        stack.scene.person = False

        async def cleared() -> bool:
            return [a.state for a in await stack.alerts()] == ["fired", "cleared"]

        await until(cleared, stack, 30, "the rule clearing")
        await more_cycles(stack, 3)  # gone for good: nothing more
        alerts = await stack.alerts()
        assert [a.state for a in alerts] == ["fired", "cleared"], alerts
        first, second = alerts
        assert first.rule_id == second.rule_id == rule["id"] and first.history_id
        assert len(first.frame_seqs) == 2 and first.snapshot.endswith("/snapshot.jpg")
        [(_, record)] = await stack.redis.xrange(
            stack.keys.history(SOURCE), first.history_id, first.history_id
        )
        assert record[b"text"].decode() == first.text  # the commentary of that very window
        event = await asyncio.to_thread(sse.next_matching, lambda e: e.event == "alert", 10)
        assert event.data["alert_id"] == first.alert_id and event.data["state"] == "fired"
        sse.close()

        await check_webhooks(stack, alerts, fired_at)
        await check_mqtt(stack, rule["id"], alerts)
        listed = (await client.get(f"/api/sources/{SOURCE}/rules")).json()["rules"][0]
        assert listed["last_fired"] and listed["last_alert"] == second.alert_id
        status = (await client.get("/api/status")).json()["alerts"]
        assert [p["delivery"] for p in status["processes"]] == ["d1"]
        assert status["processes"][0]["mqtt"] == "connected" and status["webhooks_dead"] == 0
    await check_page(stack, first)
    await check_availability(stack)


async def check_availability(stack: Stack) -> None:
    """Home Assistant's entities go unavailable with the worker, and with the bridge."""
    worker, alerts = stack.processes[1], stack.processes[2]
    availability = f"lk/{SOURCE}/availability"
    worker.stop()

    async def offline() -> bool:
        return stack.mqtt.payloads(availability)[-1] == b"offline"

    await until(offline, stack, 15, "the source's availability going offline with its worker")
    alerts.stop()

    async def bridge_down() -> bool:
        return stack.mqtt.payloads("lk/bridge")[-1] == b"offline"

    await until(bridge_down, stack, 15, "the bridge going offline with `lookout alerts`")


async def check_webhooks(stack: Stack, alerts: list[AlertEvent], fired_at: float) -> None:
    async def retried() -> bool:
        jobs = await stack.redis.hvals(stack.keys.webhook_jobs)  # type: ignore[misc]
        tries = [job.attempts for job in map(decode_job, jobs) if job is not None]
        return len(tries) == 2 and min(tries) >= 2

    await until(retried, stack, 30, "failed tries while the receiver is down")
    await asyncio.sleep(max(0.0, fired_at + OUTAGE_S - time.monotonic()))
    stack.receiver.start()

    async def delivered() -> bool:
        return len(stack.receiver.ok()) >= 2 and not await stack.redis.zcard(stack.keys.webhook_due)

    await until(delivered, stack, 30, "both webhooks after the outage")
    got = stack.receiver.ok()
    assert sorted(b["alert_id"] for b in got) == sorted(a.alert_id for a in alerts)  # once each
    for delivery in stack.receiver.deliveries:
        assert verify(SECRET, delivery.headers, delivery.body), delivery.headers
        body = msgspec.json.decode(delivery.body)
        assert delivery.headers["idempotency-key"] == body["alert_id"]
        assert int(delivery.headers["x-lookout-attempt"]) >= 2
    assert {b["state"] for b in got} == {"fired", "cleared"} and got[0]["source"] == SOURCE


async def check_mqtt(stack: Stack, rule_id: str, alerts: list[AlertEvent]) -> None:
    mqtt = stack.mqtt
    state = f"lk/{SOURCE}/rule/{rule_id}/state"
    config = f"homeassistant/binary_sensor/lookout_{SOURCE}_{rule_id}/config"

    async def seen() -> bool:
        return b"ON" in mqtt.payloads(state) and bool(mqtt.payloads(f"lk/{SOURCE}/commentary"))

    await until(seen, stack, 15, "MQTT state and commentary")
    states = [p for p in mqtt.payloads(state) if p in (b"ON", b"OFF")]
    assert states[states.index(b"ON") :] == [b"ON", b"OFF"], states
    discovery = msgspec.json.decode(mqtt.payloads(config)[-1])
    assert discovery["state_topic"] == state and discovery["name"] == "Someone there"
    assert discovery["device"]["identifiers"] == [f"lookout_{SOURCE}"]
    assert {"topic": f"lk/{SOURCE}/availability"} in discovery["availability"]
    camera = msgspec.json.decode(
        mqtt.payloads(f"homeassistant/camera/lookout_{SOURCE}_snapshot/config")[-1]
    )
    assert camera["topic"] == f"lk/{SOURCE}/snapshot"
    assert mqtt.payloads(f"homeassistant/sensor/lookout_{SOURCE}_commentary/config")
    assert mqtt.payloads(f"lk/{SOURCE}/snapshot")[-1].startswith(b"\xff\xd8\xff")
    assert mqtt.payloads(f"lk/{SOURCE}/availability")[-1] == b"online"
    assert mqtt.payloads("lk/bridge")[-1] == b"online"
    sent = [msgspec.json.decode(p)["alert_id"] for p in mqtt.payloads("lk/alerts")]
    assert sent == [a.alert_id for a in alerts]


async def check_page(stack: Stack, alert: AlertEvent) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    if shutil.which(CHROMIUM) is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.add_init_script(f"localStorage.setItem('lookout.key', '{KEY}')")
            await page.goto(f"{stack.url}/?source={SOURCE}")
            item = page.locator(f'#alerts-list li[data-alert="{alert.alert_id}"]')
            await item.wait_for(timeout=15_000)
            assert "Someone there fired" in await item.inner_text()
            image = item.locator("img")
            await page.wait_for_function(
                "img => img.complete && img.naturalWidth > 0",
                arg=await image.element_handle(),
                timeout=15_000,
            )
            assert "token=" in (await image.get_attribute("src") or "")  # never the key
            rules = page.locator("#rules-list li[data-rule]")
            assert "last fired" in await rules.first.inner_text()
        finally:
            await browser.close()
