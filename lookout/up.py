"""`lookout up`: the embedded default — everything Lookout needs, on this machine, one command.

Uses REDIS_URL when it answers, else starts a private `redis-server` on a free port; makes
the sample clip on first run; starts a producer for it, a producer supervisor (so sources
added from the page run too), the worker and the API as child processes; prints the URL.
Ctrl-C (or SIGTERM) stops the children in reverse order, then the private Redis.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from shared.settings import Settings

SAMPLE_CLIP = Path("var/sample.mp4")
STOP_DEADLINE = 10.0  # seconds a child gets to stop on SIGTERM before it is killed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default="", help="video source to start with (default: the bundled sample clip)"
    )
    parser.add_argument("--source", default="sample", help="name of that source (default sample)")


class UpError(RuntimeError):
    """Something `lookout up` needs is missing; the message says what to install or change."""


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    """True if a Redis server answers PING at `url`."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        return bool(client.ping())
    except (redis.exceptions.RedisError, OSError):
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Children:
    """The processes `up` started, stopped in reverse order."""

    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        print(f"lookout up: starting {name}: {' '.join(argv)}", flush=True)
        self.procs.append((name, subprocess.Popen(argv, env=env)))

    def first_exited(self) -> tuple[str, int] | None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                return name, int(proc.returncode)
        return None

    def stop_all(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_DEADLINE
        for name, proc in reversed(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(
                    f"lookout up: {name} did not stop in {STOP_DEADLINE:.0f}s; killing it",
                    flush=True,
                )
                proc.kill()
                proc.wait()


def start_private_redis(children: Children) -> str:
    """Start a redis-server without persistence on a free port; return its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise UpError(
            "no Redis answers at REDIS_URL and redis-server is not installed: "
            "install it (apt-get install redis-server, brew install redis) or set REDIS_URL"
        )
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="lookout-redis-")
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    children.start("redis", [*argv, "--dir", workdir], dict(os.environ))
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not redis_answers(url):
        if time.monotonic() > deadline:
            raise UpError(f"the private redis-server on port {port} did not start")
        time.sleep(0.1)
    return url


def wait_for_api(base: str, children: Children, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (exited := children.first_exited()) is not None:
            raise UpError(
                f"{exited[0]} exited with code {exited[1]} during start (see its log above)"
            )
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise UpError(f"the API did not answer at {base}/health within {timeout:.0f}s")


def start_stack(args: argparse.Namespace, settings: Settings, children: Children) -> str:
    """Start Redis (if needed) and the Lookout processes; return the page URL."""
    redis_url = settings.redis_url
    if redis_answers(redis_url):
        print(f"lookout up: using Redis at {redis_url}", flush=True)
    else:
        print(f"lookout up: no Redis at {redis_url}; starting a private one", flush=True)
        redis_url = start_private_redis(children)
    url = args.url
    if not url:
        from producers.sample_clip import ensure_sample_clip

        url = str(ensure_sample_clip(SAMPLE_CLIP))
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}
    me = [sys.executable, "-m", "lookout", "--env-file", args.env_file]
    children.start("api", [*me, "api"], env)
    children.start("worker", [*me, "worker"], env)
    children.start("supervisor", [*me, "producer", "--supervise"], env)
    children.start("producer", [*me, "producer", "--source", args.source, "--url", url], env)
    host = "127.0.0.1" if settings.server_host in ("0.0.0.0", "::") else settings.server_host
    base = f"http://{host}:{settings.server_port}"
    wait_for_api(base, children)
    return base


def open_api_warning(settings: Settings, base: str) -> str | None:
    """A loud note when no API keys are set (the API then listens on loopback only)."""
    if settings.api_keys.strip() or settings.api_keys_file:
        return None
    return (
        f"lookout up: WARNING: the API is open: no API keys (API_KEYS, API_KEYS_FILE) are set, "
        f"so anyone who can reach {base} may watch and control every source. It listens on "
        "loopback only; see docs/security.md before putting it on a network.\n"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    children = Children()
    stop_requested = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    code = 0
    try:
        base = start_stack(args, settings, children)
        print(f"\nlookout up: open {base}/ in a browser (Ctrl-C stops everything)\n", flush=True)
        if (warning := open_api_warning(settings, base)) is not None:
            print(warning, flush=True)
        while not stop_requested:
            if (exited := children.first_exited()) is not None:
                print(f"lookout up: {exited[0]} exited with code {exited[1]}; stopping", flush=True)
                code = exited[1] or 1
                break
            time.sleep(0.5)
    except UpError as exc:
        print(f"lookout up: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        print("lookout up: stopping", flush=True)
        children.stop_all()
    return code
