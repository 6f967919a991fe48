"""MQTT of `lookout alerts` (run in-process) against a real Mosquitto: discovery configs follow
rules as they are added, muted, deleted; and the alerts stream read goes on after Redis lost
the stream and its consumer group (a restart without persistence)."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.rules import Rule, RuleStore
from shared.settings_env import load_settings
from shared.sources import SourceRegistry
from tests.alerts_support import Mosquitto, MqttRecorder, Receiver
from tests.test_alerts_webhooks import delivering, fire
from tests.worker_support import until


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    server = Mosquitto()
    yield server
    server.stop()


async def test_discovery_follows_rules_and_the_stream_survives_losing_its_group(
    test_env: dict[str, str], redis_client: aioredis.Redis, keys: Keys, broker: Mosquitto
) -> None:
    settings = load_settings(
        {
            **test_env,
            "MQTT_URL": broker.url,
            "WEBHOOK_SECRET": "x",
            "WEBHOOK_ALLOW_LOOPBACK": "true",
        },
        env_file=None,
    )
    recorder = MqttRecorder(broker.port)
    receiver = Receiver().start()
    store = RuleStore(redis_client, keys)
    await SourceRegistry(redis_client, keys, "describe").register("yard")
    config = "homeassistant/binary_sensor/lookout_yard_{}/config"
    try:
        async with delivering(settings):
            await store.put("yard", Rule(id="a1", name="Anyone", condition="someone enters"))
            await until(lambda: bool(recorder.payloads(config.format("a1"))))
            sent = msgspec.json.decode(recorder.payloads(config.format("a1"))[-1])
            assert sent["name"] == "Anyone" and sent["unique_id"] == "lookout_yard_a1"
            assert recorder.payloads("lookout/yard/availability")[-1] == b"offline"  # no worker
            await store.put("yard", Rule(id="a1", name="Anyone", condition="x", mqtt=False))
            await until(lambda: recorder.payloads(config.format("a1"))[-1] == b"")  # removed
            # Redis lost the alerts stream and the group: the reader makes them again.
            await redis_client.delete(keys.alerts)
            event = await fire(redis_client, keys, "yard", receiver.url(), 7)
            await until(lambda: len(receiver.ok()) == 1)
            assert receiver.ok()[0]["alert_id"] == event.alert_id
            await until(lambda: b"ON" in recorder.payloads("lookout/yard/rule/r7/state"))
            assert recorder.payloads("lookout/alerts")
    finally:
        receiver.stop()
        recorder.stop()
