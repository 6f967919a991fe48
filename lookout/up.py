"""`lookout up`: the embedded default — everything Lookout needs, on this machine, one command.

Refuses to start anything when the API's port is taken. Uses REDIS_URL when it answers,
else starts a private `redis-server` on a free port (its data folder is removed on exit);
writes the Redis URL to `var/redis.url` for the other `lookout` commands (see
lookout/redis_url_file.py for the precedence); makes the sample clip on first run; starts a
producer for it, a producer supervisor (so sources added from the page run too), the worker
and the API as child processes; prints the page URL, the Redis URL and a redis-cli line.
Ctrl-C (or SIGTERM) stops the children in reverse order, then the private Redis.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
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

from api.workers import port_in_use
from lookout.redis_url_file import REDIS_URL_FILE, remove_redis_url, write_redis_url
from shared.keys import Keys
from shared.settings import Settings

SAMPLE_CLIP = Path("var/sample.mp4")
STOP_DEADLINE = 10.0  # seconds a child gets to stop on SIGTERM before it is killed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default="", help="video source to start with (default: the bundled sample clip)"
    )
    parser.add_argument("--source", default="sample", help="name of that source (default sample)")
    parser.add_argument(
        "--port", type=int, default=0, help="port of the API and page (default SERVER_PORT, 8199)"
    )


class UpError(RuntimeError):
    """Something `lookout up` needs is missing; the message says what to install or change."""


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    """True if a Redis server answers PING at `url`."""
    import redis

    from shared.bus import connect_redis_sync

    try:
        client = connect_redis_sync(url, timeout=timeout)
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
    folders: list[str] = field(default_factory=list)  # removed once every child has stopped

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
        for folder in self.folders:
            shutil.rmtree(folder, ignore_errors=True)


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
    children.folders.append(workdir)
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


def start_stack(
    args: argparse.Namespace, settings: Settings, children: Children
) -> tuple[str, str]:
    """Start Redis (if needed) and the Lookout processes; return the page and Redis URLs."""
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
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "SERVER_PORT": str(settings.server_port),
        "PYTHONUNBUFFERED": "1",
    }
    me = [sys.executable, "-m", "lookout", "--env-file", args.env_file]
    children.start("api", [*me, "api"], env)
    children.start("worker", [*me, "worker"], env)
    children.start("supervisor", [*me, "producer", "--supervise"], env)
    children.start("producer", [*me, "producer", "--source", args.source, "--url", url], env)
    base = f"http://{api_host(settings)}:{settings.server_port}"
    wait_for_api(base, children)
    return base, redis_url


def where_to_look(base: str, redis_url: str, settings: Settings, source: str) -> str:
    """What `up` prints once everything answers: the page, Redis, and lines that work."""
    history = Keys(settings.key_prefix).history(source)  # quoted: the braces of its hash tag
    return (
        f"\nlookout up: open {base}/ in a browser (Ctrl-C stops everything)\n"
        f"lookout up: Redis is {redis_url}, written to {REDIS_URL_FILE}: `lookout tail {source}`"
        " and the other lookout commands run from this folder use it unless REDIS_URL is set\n"
        f"lookout up: past commentaries: redis-cli -u {redis_url} XRANGE {shlex.quote(history)} - +\n"
    )


def open_api_warning(settings: Settings, base: str) -> str | None:
    """A loud note when no API keys are set (the API then listens on loopback only)."""
    if settings.api_keys.strip() or settings.api_keys_file:
        return None
    return (
        f"lookout up: WARNING: the API is open: no API keys (API_KEYS, API_KEYS_FILE) are set, "
        f"so anyone who can reach {base} may watch and control every source. It listens on "
        "loopback only; see docs/security.md before putting it on a network.\n"
    )


def api_host(settings: Settings) -> str:
    return "127.0.0.1" if settings.server_host in ("0.0.0.0", "::") else settings.server_host


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.port:
        settings = dataclasses.replace(settings, server_port=args.port)
    if port_in_use(settings.server_host, settings.server_port):
        print(
            f"lookout up: port {settings.server_port} on {settings.server_host} is already in "
            "use (another lookout up, or another program); nothing was started. Stop it, or "
            "choose another port: lookout up --port PORT (or SERVER_PORT=PORT)",
            file=sys.stderr,
            flush=True,
        )
        return 1
    children = Children()
    stop_requested = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    code, redis_url = 0, ""
    try:
        base, redis_url = start_stack(args, settings, children)
        write_redis_url(redis_url)
        print(where_to_look(base, redis_url, settings, args.source), flush=True)
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
        if redis_url:
            remove_redis_url(redis_url)
    return code
