"""lookout/health.py, the containers' healthcheck command, against a real Redis and HTTP server."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis

from lookout import health
from shared.keys import Keys
from shared.settings import Settings
from shared.settings_env import load_settings
from tests.helpers import REPO, free_port


class HealthEndpoint(BaseHTTPRequestHandler):
    status = 200

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        code = self.status if self.path == "/health" else 404
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


@pytest.fixture
def api_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), HealthEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    HealthEndpoint.status = 200
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def with_env(settings: Settings, **extra: str) -> Settings:
    env = {"REDIS_URL": settings.redis_url, "KEY_PREFIX": settings.key_prefix, **extra}
    return load_settings(env, env_file=None)


def beat(url: str, keys: Keys, worker_id: str, host: str) -> None:
    client = redis.Redis.from_url(url)
    client.hset(keys.worker_status(worker_id), mapping={"worker": worker_id, "host": host})
    client.close()


@pytest.mark.parametrize(
    ("argv", "role"),
    [
        (["/opt/venv/bin/python", "/opt/venv/bin/lookout", "worker"], "worker"),
        (["lookout", "--env-file", "x", "api", "--port", "1"], "api"),
        (["lookout", "producer", "--supervise"], "producer"),
        (["lookout", "tail", "cam"], "producer"),
        (["/sbin/docker-init", "--", "lookout", "worker"], "worker"),
        (["lookout", "tail", "api"], "producer"),
        (["python", "-m", "uvicorn", "api"], "producer"),
        ([], "producer"),
    ],
)
def test_role_from_pid1_command_line(argv: list[str], role: str) -> None:
    assert health.role_from_cmdline(argv) == role


def test_pid1_cmdline_reads_nul_separated_arguments(tmp_path: Path) -> None:
    proc = tmp_path / "cmdline"
    proc.write_bytes(b"/opt/venv/bin/python\0/opt/venv/bin/lookout\0worker\0")
    assert health.pid1_cmdline(proc) == ["/opt/venv/bin/python", "/opt/venv/bin/lookout", "worker"]
    assert health.pid1_cmdline(tmp_path / "missing") == []


def test_api_check_follows_the_health_endpoint(settings: Settings, api_port: int) -> None:
    up = with_env(settings, SERVER_PORT=str(api_port))
    assert "answered 200" in health.check("api", up)
    HealthEndpoint.status = 503
    with pytest.raises(health.Unhealthy, match="answered 503"):
        health.check("api", up)
    down = with_env(settings, SERVER_PORT=str(free_port()))
    with pytest.raises(health.Unhealthy, match="api unreachable"):
        health.check("api", down, timeout=1)


def test_worker_check_finds_this_hosts_heartbeat(settings: Settings, keys: Keys) -> None:
    with pytest.raises(health.Unhealthy, match="no heartbeat from host box1"):
        health.check_worker(settings, 1, host="box1")
    beat(settings.redis_url, keys, "box2-7", "box2")
    with pytest.raises(health.Unhealthy, match="box1"):
        health.check_worker(settings, 1, host="box1")
    beat(settings.redis_url, keys, "box1-9", "box1")
    assert health.check_worker(settings, 1, host="box1").endswith(keys.worker_status("box1-9"))


def test_worker_check_uses_worker_id_when_set(settings: Settings, keys: Keys) -> None:
    named = with_env(settings, WORKER_ID="gpu-a")
    with pytest.raises(health.Unhealthy, match="no heartbeat of gpu-a"):
        health.check("worker", named)
    beat(settings.redis_url, keys, "gpu-a", "elsewhere")
    assert "gpu-a" in health.check("worker", named)


def test_unreachable_redis_is_reported_with_its_url(settings: Settings) -> None:
    gone = with_env(settings, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    for role in ("producer", "worker"):
        with pytest.raises(health.Unhealthy, match=f"Redis unreachable at {gone.redis_url}"):
            health.check(role, gone, timeout=1)
    assert "answers" in health.check("producer", settings)


def test_command_exit_codes(test_env: dict[str, str], keys: Keys) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lookout.health", "--env-file", "/nonexistent", *args],
            cwd=REPO,
            env={**os.environ, **test_env, "WORKER_ID": "w1"},
            capture_output=True,
            text=True,
            timeout=60,
        )

    missing = run("worker")
    assert missing.returncode == 1 and "no heartbeat of w1" in missing.stderr
    beat(test_env["REDIS_URL"], keys, "w1", "h")
    found = run("worker")
    assert found.returncode == 0 and "worker ok" in found.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "lookout.health", "--env-file", "/nonexistent", "producer"],
        cwd=REPO,
        env={**os.environ, "REDIS_URL": "http://nope"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "REDIS_URL" in bad.stderr
