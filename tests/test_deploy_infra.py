"""infra/redis.conf and infra/Caddyfile, run for real: redis-server and Caddy (Debian's `caddy`).

The Caddy test puts the compose proxy's own config in front of a small streaming HTTP server
and checks that an SSE event and an MJPEG part reach the client while the upstream response
is still open: a buffering proxy would hold them back and the test would time out.
The slow test puts a real `lookout api` behind the same config: health, page, and a text
chunk published on Redis arriving over SSE through the proxy; then the api healthcheck.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
import yaml

from shared.keys import Keys
from shared.messages import TextChunk, encode_message
from shared.sources import SourceRegistry
from tests.helpers import REPO, LookoutProcess, free_port, wait_for_port

READ_TIMEOUT_S = 10.0


def require(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed; CI must install it")
        pytest.skip(f"{name} is not installed")
    return found


def test_redis_conf_loads_in_redis_server(tmp_path: Path) -> None:
    port = free_port()
    # Only what a test must change: address, port and the data folder (redis-server changes
    # into `dir` while reading the file, and /data only exists in the redis image).
    text = (REPO / "infra/redis.conf").read_text()
    assert "\ndir /data\n" in text
    conf = tmp_path / "redis.conf"
    conf.write_text(text.replace("\ndir /data\n", f"\ndir {tmp_path}\n"))
    with subprocess.Popen(
        [require("redis-server"), str(conf), "--port", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    ) as proc:
        try:
            wait_for_port(port)
            client = redis.Redis(port=port)
            assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
            assert client.config_get("save") == {"save": "300 1"}
            assert client.config_get("appendonly") == {"appendonly": "no"}
            client.close()
        finally:
            proc.kill()
            proc.wait(10)


def test_livekit_yaml_keeps_secrets_out_and_uses_its_own_redis_db() -> None:
    config = yaml.safe_load((REPO / "infra/livekit.yaml").read_text())
    assert "keys" not in config and "key_file" not in config
    assert config["redis"] == {"address": "redis:6379", "db": 1}
    assert config["port"] == 7880


class StreamingUpstream(BaseHTTPRequestHandler):
    """Sends one part of a stream, then waits until the test has read it through the proxy."""

    released = threading.Event()
    hits: list[str] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.hits.append(self.path)
        if self.path == "/health":
            self._send(200, "application/json", b'{"status":"ok"}')
            return
        if self.path == "/events":
            first, last, kind = b"data: one\n\n", b"data: two\n\n", "text/event-stream"
        else:
            first = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 4\r\n\r\n\xff\xd8\xff\xd9\r\n"
            last, kind = b"--frame--\r\n", "multipart/x-mixed-replace; boundary=frame"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.end_headers()
        self.wfile.write(first)
        self.wfile.flush()
        # The rest only comes after the client saw the first part through the proxy.
        self.released.wait(READ_TIMEOUT_S)
        self.wfile.write(last)
        self.wfile.flush()
        self.close_connection = True

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StreamingUpstream)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    StreamingUpstream.released.clear()
    StreamingUpstream.hits.clear()
    yield int(server.server_address[1])
    StreamingUpstream.released.set()
    server.shutdown()
    server.server_close()


@contextmanager
def caddy(api_port: int, tmp_path: Path) -> Iterator[int]:
    """infra/Caddyfile run by Caddy on a free port, with `localhost:api_port` as the API."""
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "PROXY_PORT": str(port),
        "API_HOST": "localhost",
        "API_PORT": str(api_port),
    }
    log = (tmp_path / "caddy.log").open("wb")
    proc = subprocess.Popen(
        [
            require("caddy"),
            "run",
            "--adapter",
            "caddyfile",
            "--config",
            str(REPO / "infra/Caddyfile"),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


@pytest.fixture
def proxy(upstream: int, tmp_path: Path) -> Iterator[int]:
    with caddy(upstream, tmp_path) as port:
        yield port


def test_caddyfile_validates(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            require("caddy"),
            "validate",
            "--adapter",
            "caddyfile",
            "--config",
            str(REPO / "infra/Caddyfile"),
        ],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "API_HOST": "localhost"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "Valid configuration" in result.stdout + result.stderr


def test_proxy_health_and_api_passthrough(proxy: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxy, timeout=READ_TIMEOUT_S)
    conn.request("GET", "/proxy-health")
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, b"ok")
    conn.request("GET", "/health")
    response = conn.getresponse()
    assert response.status == 200 and response.read() == b'{"status":"ok"}'
    assert StreamingUpstream.hits == ["/health"]
    conn.close()


@pytest.mark.parametrize(
    ("path", "first"),
    [("/events", b"data: one\n\n"), ("/video.mjpeg", b"--frame\r\nContent-Type: image/jpeg")],
)
def test_streams_pass_the_proxy_unbuffered(proxy: int, path: str, first: bytes) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxy, timeout=READ_TIMEOUT_S)
    conn.request("GET", path)
    response = conn.getresponse()
    assert response.status == 200
    seen = b""
    while first not in seen:
        chunk = response.read1(4096)
        assert chunk, f"stream ended before the first part: {seen!r}"
        seen += chunk
    StreamingUpstream.released.set()
    assert response.read().endswith((b"data: two\n\n", b"--frame--\r\n"))
    conn.close()


def get(port: int, path: str) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=READ_TIMEOUT_S)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        conn.close()


async def register(name: str, url: str, keys: Keys) -> None:
    client = aioredis.Redis.from_url(url)
    await SourceRegistry(client, keys, "describe").register(name, "rtsp://camera.invalid/stream")
    await client.aclose()


def sse_through_proxy(port: int, test_env: dict[str, str]) -> None:
    """A text chunk published on Redis reaches an SSE viewer through the proxy, while open."""
    keys = Keys(test_env["KEY_PREFIX"])
    asyncio.run(register("cam", test_env["REDIS_URL"], keys))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=READ_TIMEOUT_S)
    conn.request("GET", "/api/sources/cam/events")
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type", "").startswith("text/event-stream")
    client = redis.Redis.from_url(test_env["REDIS_URL"])
    channel = keys.text_channel("cam")
    chunk = TextChunk(source="cam", cycle="c1", seq=0, text="through the proxy")
    seen = b""
    # Publish until the API's subscription is up; the stream never ends by itself, so only
    # an unbuffered proxy lets the chunk arrive while it is open.
    deadline = time.monotonic() + 30
    while b"through the proxy" not in seen:
        assert time.monotonic() < deadline, f"no chunk through the proxy: {seen[-500:]!r}"
        client.publish(channel, encode_message(chunk))
        seen += response.read1(65536)
    client.close()
    conn.close()


@pytest.mark.slow
def test_real_api_behind_the_proxy_and_its_healthcheck(
    test_env: dict[str, str], tmp_path: Path
) -> None:
    api_port = free_port()
    # Keep-alives every second: the SSE read loop below wakes at least that often.
    env = {**test_env, "SSE_KEEPALIVE": "1"}
    api = LookoutProcess(["api", "--host", "127.0.0.1", "--port", str(api_port)], env, "api")
    try:
        wait_for_port(api_port, timeout=30)
        with caddy(api_port, tmp_path) as port:
            status, kind, body = get(port, "/health")
            assert status == 200 and kind.startswith("application/json"), body
            status, kind, _ = get(port, "/")
            assert status == 200 and kind.startswith("text/html")
            sse_through_proxy(port, test_env)
        # The container healthcheck of the api service, against the real API.
        check = subprocess.run(
            [sys.executable, "-m", "lookout.health", "--env-file", "/nonexistent", "api"],
            cwd=REPO,
            env={**os.environ, **test_env, "SERVER_PORT": str(api_port)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0 and "answered 200" in check.stdout, check.stderr
    finally:
        api.stop()
    assert api.alive() is False, api.log()
