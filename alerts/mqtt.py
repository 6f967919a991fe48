"""MQTT: rule states, commentary and snapshots on a broker, with Home Assistant discovery.

Topics under MQTT_PREFIX (`P` below), all retained except `P/alerts`:
- `P/bridge`: `online` / `offline` (the broker sends `offline` if this process dies: its will);
- `P/SOURCE/availability`: `online` while a live worker comments on the source, else `offline`;
- `P/SOURCE/rule/RULE/state`: `ON` / `OFF`; `P/SOURCE/rule/RULE/alert`: the last alert (JSON);
- `P/SOURCE/commentary`: the latest commentary (cut to 255 characters, Home Assistant's limit
  for a state), `P/SOURCE/commentary/attributes`: JSON with the whole text;
- `P/SOURCE/snapshot`: the JPEG of the latest alert;
- `P/alerts`: every alert as JSON, as it happens (for automations).
Discovery configs (under MQTT_DISCOVERY_PREFIX): a `binary_sensor` per rule, a `sensor` for the
commentary and a `camera` for the snapshot per source, one device per source, available when
both the bridge and the source are. paho-mqtt runs its own network thread and reconnects by
itself; what is retained is published again after every (re)connect.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from shared.messages import AlertEvent
from shared.rules import Rule

log = logging.getLogger(__name__)

STATE_MAX = 255  # Home Assistant drops a sensor state longer than this


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    username: str = ""
    password: str = ""


def parse_mqtt_url(url: str) -> Broker:
    """`mqtt://[user:password@]host[:port]`; ValueError naming MQTT_URL otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ValueError("MQTT_URL must look like mqtt://[user:password@]host[:port]")
    return Broker(
        parts.hostname,
        parts.port or 1883,
        unquote(parts.username or ""),
        unquote(parts.password or ""),
    )


@dataclass
class Topics:
    prefix: str
    discovery: str

    @property
    def bridge(self) -> str:
        return f"{self.prefix}/bridge"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}/alerts"

    def source(self, source: str, leaf: str) -> str:
        return f"{self.prefix}/{source}/{leaf}"

    def rule(self, source: str, rule_id: str, leaf: str) -> str:
        return f"{self.prefix}/{source}/rule/{rule_id}/{leaf}"

    def config(self, component: str, object_id: str) -> str:
        return f"{self.discovery}/{component}/{object_id}/config"


@dataclass
class MqttBridge:
    """Publishes to one broker; `retained` remembers what was sent so only changes go out."""

    broker: Broker
    topics: Topics
    client_id: str
    retained: dict[str, bytes] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    connected: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id)
        if self.broker.username:
            client.username_pw_set(self.broker.username, self.broker.password or None)
        client.will_set(self.topics.bridge, "offline", qos=1, retain=True)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        client.loop_start()
        self.client = client

    def stop(self) -> None:
        info = self.client.publish(self.topics.bridge, "offline", qos=1, retain=True)
        if self.connected.is_set():
            info.wait_for_publish(2.0)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self, client: paho.Client, _u: object, _f: object, code: object, _p: object
    ) -> None:
        if getattr(code, "is_failure", False):
            log.warning("MQTT broker refused the connection: %s", code)
            return
        log.info("MQTT connected to %s:%d", self.broker.host, self.broker.port)
        client.publish(self.topics.bridge, "online", qos=1, retain=True)
        with self._lock:
            self.retained.clear()  # a broker without persistence lost them: send all again
        self.connected.set()

    def _on_disconnect(self, *_args: object) -> None:
        self.connected.clear()
        log.warning("MQTT disconnected; paho reconnects")

    def retain(self, topic: str, payload: bytes | str) -> None:
        """Publish a retained payload if it differs from what was last sent there."""
        data = payload.encode() if isinstance(payload, str) else payload
        with self._lock:
            if self.retained.get(topic) == data:
                return
            self.retained[topic] = data
        self.client.publish(topic, data, qos=1, retain=True)

    def retain_once(self, topic: str, payload: str) -> None:
        """Publish a retained payload only if nothing was sent there since connecting."""
        with self._lock:
            if topic in self.retained:
                return
        self.retain(topic, payload)

    def forget(self, topic: str) -> None:
        """Clear a retained topic (an empty payload removes a discovery config)."""
        with self._lock:
            self.retained.pop(topic, None)
        self.client.publish(topic, b"", qos=1, retain=True)

    def published(self) -> set[str]:
        with self._lock:
            return set(self.retained)

    # --- what Lookout publishes ---
    def source_state(
        self, source: str, rules: list[Rule], active: dict[str, bool], online: bool
    ) -> set[str]:
        """Availability, rule states and discovery configs of one source; the topics it owns."""
        t = self.topics
        owned = {t.source(source, "availability")}
        self.retain(t.source(source, "availability"), "online" if online else "offline")
        for rule in rules:
            state = t.rule(source, rule.id, "state")
            # Alerts move the state (in stream order); this only sets it after a (re)connect
            # or a mute, so a sync that read Redis just before an alert cannot undo it.
            if rule.muted:
                self.retain(state, "OFF")
            else:
                self.retain_once(state, "ON" if active.get(rule.id) else "OFF")
            owned.add(state)
        if t.discovery:
            for topic, config in self._configs(source, rules).items():
                self.retain(topic, json.dumps(config, sort_keys=True))
                owned.add(topic)
        return owned

    def alert(self, event: AlertEvent, payload: str, jpeg: bytes) -> None:
        t = self.topics
        on = "ON" if event.state == "fired" else "OFF"
        self.retain(t.rule(event.source, event.rule_id, "state"), on)
        self.retain(t.rule(event.source, event.rule_id, "alert"), payload)
        if jpeg:
            self.retain(t.source(event.source, "snapshot"), jpeg)
        self.client.publish(t.alerts, payload, qos=1, retain=False)

    def commentary(self, source: str, text: str, attributes: str) -> None:
        self.retain(self.topics.source(source, "commentary"), text[:STATE_MAX])
        self.retain(self.topics.source(source, "commentary/attributes"), attributes)

    def _configs(self, source: str, rules: list[Rule]) -> dict[str, dict[str, object]]:
        t = self.topics
        device = {
            "identifiers": [f"lookout_{source}"],
            "name": f"Lookout {source}",
            "manufacturer": "Lookout",
        }
        common = {
            "device": device,
            "availability": [
                {"topic": t.bridge},
                {"topic": t.source(source, "availability")},
            ],
            "availability_mode": "all",
        }
        configs: dict[str, dict[str, object]] = {
            t.config("sensor", f"lookout_{source}_commentary"): {
                **common,
                "name": "Commentary",
                "unique_id": f"lookout_{source}_commentary",
                "state_topic": t.source(source, "commentary"),
                "json_attributes_topic": t.source(source, "commentary/attributes"),
                "icon": "mdi:message-text",
            },
            t.config("camera", f"lookout_{source}_snapshot"): {
                **common,
                "name": "Alert snapshot",
                "unique_id": f"lookout_{source}_snapshot",
                "topic": t.source(source, "snapshot"),
            },
        }
        for rule in rules:
            configs[t.config("binary_sensor", f"lookout_{source}_{rule.id}")] = {
                **common,
                "name": rule.name,
                "unique_id": f"lookout_{source}_{rule.id}",
                "state_topic": t.rule(source, rule.id, "state"),
                "payload_on": "ON",
                "payload_off": "OFF",
                "json_attributes_topic": t.rule(source, rule.id, "alert"),
            }
        return configs
