"""Real servers for the alert tests: Mosquitto on a free port, an MQTT recorder (paho), and a
webhook receiver (an HTTP server that checks signatures and can be down, slow or refusing)."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers import free_port, wait_for_port


def verify(secret: str, headers: dict[str, str], body: bytes, max_age: float = 300) -> bool:
    """The receiver's check, as docs/alerts.md shows it: HMAC-SHA256 of `TIMESTAMP.BODY`."""
    timestamp = headers.get("x-lookout-timestamp", "")
    signature = headers.get("x-lookout-signature", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > max_age:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(signature, "sha256=" + expected.hexdigest())


class Mosquitto:
    """Debian's mosquitto on a free loopback port, anonymous, no persistence."""

    def __init__(self) -> None:
        if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
            pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="lookout-mosquitto-")
        conf = Path(self.dir) / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


class MqttRecorder:
    """Subscribes to everything and keeps (topic, payload, retained) in arrival order."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.ready = threading.Event()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="test-recorder")
        client.on_connect = lambda c, *_: (c.subscribe("#", qos=1), self.ready.set())
        client.on_message = self._on_message
        client.connect("127.0.0.1", port)
        client.loop_start()
        self.client = client

    def _on_message(self, _c: object, _u: object, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def payloads(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == topic]

    def topics(self) -> set[str]:
        with self._lock:
            return {t for t, _, _ in self.messages}

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class Receiver:
    """A webhook endpoint on `port`; `start`/`stop` take it up and down on the same port.
    `answer` is the status it gives; `hold` makes requests to `/slow` wait until it is set."""

    port: int = field(default_factory=free_port)
    answer: int = 200
    deliveries: list[Delivery] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)
    slow_started: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/slow":
                    owner.slow_started.set()
                    owner.hold.wait(30)
                status = owner.answer
                owner.deliveries.append(
                    Delivery(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body, status
                    )
                )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def ok(self, path: str = "/hook") -> list[dict[str, Any]]:
        """Bodies of the deliveries to `path` it answered with 2xx."""
        return [json.loads(d.body) for d in self.deliveries if d.path == path and d.answered < 300]
