"""The `lookout alerts` process: reads the alerts stream, queues webhooks, feeds MQTT.

Alerts are read with a consumer group (`GROUP`) on `Keys.alerts`, so an alert recorded while
this process was down is read when it is back, and one read by a process that died before
acknowledging it is claimed by another after `RECLAIM_IDLE_MS`. Reading only queues: a webhook
becomes a Redis job (alerts/webhook_queue.py) before the alert is acknowledged, and the sender
works the queue on its own, so no endpoint slows the reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time

import msgspec
from redis.exceptions import ResponseError

from alerts.mqtt import MqttBridge, Topics, parse_mqtt_url
from alerts.webhook_queue import WebhookQueue, job_id
from alerts.webhooks import WebhookSender
from shared.alerts import from_fields
from shared.backoff import Backoff
from shared.bus import REDIS_ERRORS, Subscription, connect_redis
from shared.delivery import DeliveryBeat, WebhookJob
from shared.keys import Keys
from shared.messages import AlertEvent, CycleFinished
from shared.record_fields import RecordError, as_text
from shared.rules import RuleStore
from shared.settings import Settings

log = logging.getLogger(__name__)

GROUP = "delivery"
RECLAIM_IDLE_MS = 60_000
MQTT_SYNC_S = 2.0
CLAIM_MARGIN_S = 30.0  # a claimed job is due again this long after its try's timeout


def webhook_body(event: AlertEvent, public_url: str) -> str:
    """The JSON a webhook receives: the alert, with an absolute snapshot URL if PUBLIC_URL."""
    data = msgspec.to_builtins(event)
    if public_url and event.snapshot:
        data["snapshot"] = public_url.rstrip("/") + event.snapshot
    return json.dumps(data, sort_keys=True, ensure_ascii=False)


class Delivery:
    """One alerts process: the stream reader, the webhook sender, MQTT and the heartbeat."""

    def __init__(self, settings: Settings, delivery_id: str) -> None:
        self.settings = settings
        self.delivery_id = delivery_id
        self.keys = Keys(settings.key_prefix)
        self.redis = connect_redis(settings.redis_url)
        self.store = RuleStore(self.redis, self.keys)
        claim_s = settings.webhook_timeout + CLAIM_MARGIN_S
        self.queue = WebhookQueue(self.redis, self.keys, claim_s)
        self.sender = WebhookSender(settings, self.queue)
        self.mqtt: MqttBridge | None = None
        if settings.mqtt_url:
            topics = Topics(
                settings.mqtt_prefix.strip("/"), settings.mqtt_discovery_prefix.strip("/")
            )
            broker = parse_mqtt_url(settings.mqtt_url)
            self.mqtt = MqttBridge(broker, topics, f"lookout-alerts-{delivery_id}")
        self.started_at = time.time()
        self._owned: set[str] = set()

    async def run(self, stop: asyncio.Event) -> None:
        if self.mqtt is not None:
            self.mqtt.start()
        helpers = [
            asyncio.create_task(self._read_loop(stop)),
            asyncio.create_task(self._heartbeat_loop(stop)),
        ]
        if self.mqtt is not None:
            helpers += [
                asyncio.create_task(self._mqtt_sync_loop(stop)),
                asyncio.create_task(self._commentary_loop()),
            ]
        sender = asyncio.create_task(self.sender.run(stop))
        try:
            await stop.wait()
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await asyncio.gather(sender, return_exceptions=True)
            with contextlib.suppress(*REDIS_ERRORS):
                await self.redis.delete(self.keys.delivery_status(self.delivery_id))
            if self.mqtt is not None:
                self.mqtt.stop()
            with contextlib.suppress(*REDIS_ERRORS):
                await self.redis.aclose()

    # --- the alerts stream ---
    async def _read_loop(self, stop: asyncio.Event) -> None:
        backoff = Backoff(0.2, 5.0)
        start = "0"  # first what this consumer read before a restart and did not acknowledge
        last_reclaim = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() - last_reclaim > RECLAIM_IDLE_MS / 2000:
                    last_reclaim = time.monotonic()
                    await self._reclaim()
                got = await self.redis.xreadgroup(
                    GROUP, self.delivery_id, {self.keys.alerts: start}, count=50, block=1000
                )
                entries = got[0][1] if got else []
                if start == "0" and not entries:
                    start = ">"
                for entry_id, fields in entries:
                    await self._handle(entry_id, fields)
                backoff.reset()
            except ResponseError as exc:
                # NOGROUP: a new stream, or Redis lost it in a restart; UNBLOCKED: the stream
                # was deleted under a blocked read. Either way the group is made again.
                log.warning("alerts stream: %s; (re)creating the consumer group", exc)
                await self._create_group()
                start = "0"
                await asyncio.sleep(backoff.next())  # a key of another type must not spin
            except REDIS_ERRORS as exc:
                delay = backoff.next()
                log.warning("alerts stream unreachable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def _create_group(self) -> None:
        with contextlib.suppress(ResponseError):  # BUSYGROUP: another process made it
            # From the stream's start: alerts recorded before the first delivery are sent too.
            await self.redis.xgroup_create(self.keys.alerts, GROUP, id="0", mkstream=True)

    async def _reclaim(self) -> None:
        """Take over alerts another alerts process read but never acknowledged (it died)."""
        result = await self.redis.xautoclaim(
            self.keys.alerts, GROUP, self.delivery_id, RECLAIM_IDLE_MS, count=100
        )
        for entry_id, fields in result[1]:
            if fields:  # None: trimmed away meanwhile
                await self._handle(entry_id, fields)

    async def _handle(self, entry_id: bytes | str, fields: dict[bytes, bytes]) -> None:
        try:
            event = from_fields(fields)
        except RecordError as exc:
            log.warning("skipped alert entry %s: %s", as_text(entry_id), exc)
        else:
            await self._deliver(event)
        await self.redis.xack(self.keys.alerts, GROUP, entry_id)

    async def _deliver(self, event: AlertEvent) -> None:
        rule = await self.store.get(event.source, event.rule_id)
        body = webhook_body(event, self.settings.public_url)
        if rule is not None and rule.webhook:
            await self.queue.enqueue(
                WebhookJob(
                    id=job_id(event.alert_id, rule.webhook),
                    alert_id=event.alert_id,
                    source=event.source,
                    rule_id=event.rule_id,
                    url=rule.webhook,
                    body=body,
                    created_at=time.time(),
                )
            )
        if self.mqtt is not None and (rule is None or rule.mqtt):
            jpeg = await self.redis.get(self.keys.alert_snapshot(event.source, event.alert_id))
            self.mqtt.alert(event, body, jpeg or b"")

    # --- MQTT ---
    async def _mqtt_sync_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._mqtt_sync()
            except REDIS_ERRORS as exc:
                log.warning("MQTT sync: Redis unreachable: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), MQTT_SYNC_S)

    async def _mqtt_sync(self) -> None:
        """Publish every source's availability, rule states and discovery configs; remove
        those of rules and sources that are gone."""
        assert self.mqtt is not None
        owned: set[str] = set()
        for raw in await self.redis.smembers(self.keys.sources):  # type: ignore[misc]
            source = as_text(raw)
            rules = [r for r in await self.store.rules(source) if r.mqtt]
            states = await self.store.states(source)
            active = {rule_id: state.active for rule_id, state in states.items()}
            online = await self._source_online(source)
            owned |= self.mqtt.source_state(source, rules, active, online)
        for topic in self._owned - owned:
            self.mqtt.forget(topic)
        self._owned = owned

    async def _source_online(self, source: str) -> bool:
        """A live worker holds the source's lease (its heartbeat has not expired)."""
        holder = await self.redis.get(self.keys.lease(source))
        if holder is None:
            return False
        return bool(await self.redis.exists(self.keys.worker_status(as_text(holder))))

    async def _commentary_loop(self) -> None:
        assert self.mqtt is not None
        sub = Subscription(self.settings.redis_url, patterns=[self.keys.events_pattern])
        async for _channel, message in sub.messages():
            if isinstance(message, CycleFinished) and message.kind == "commentary":
                attributes = {
                    "text": message.text,
                    "history_id": message.history_id,
                    "cycle": message.cycle,
                    "ts": message.ts,
                }
                self.mqtt.commentary(message.source, message.text, json.dumps(attributes))

    # --- heartbeat ---
    async def _heartbeat_loop(self, stop: asyncio.Event) -> None:
        period = self.settings.heartbeat_ttl / 3
        while not stop.is_set():
            try:
                await self._beat()
            except REDIS_ERRORS as exc:
                log.warning("heartbeat failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period)

    async def _beat(self) -> None:
        mqtt = "off"
        if self.mqtt is not None:
            mqtt = "connected" if self.mqtt.connected.is_set() else "disconnected"
        beat = DeliveryBeat(
            delivery=self.delivery_id,
            pid=os.getpid(),
            host=socket.gethostname(),
            started_at=self.started_at,
            beat_ts=time.time(),
            mqtt=mqtt,
            delivered=self.sender.delivered,
            retried=self.sender.retried,
            dead=self.sender.dead,
        )
        key = self.keys.delivery_status(self.delivery_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=beat.to_fields())
            pipe.pexpire(key, int(self.settings.heartbeat_ttl * 1000))
            await pipe.execute()
