"""`lookout health ROLE`: exit 0 when this container's process is healthy, 1 when not.

Container healthchecks call it (`python -m lookout.health ROLE` works before the subcommand
is registered in lookout/cli.py). Each role checks what its process proves to others:

- api: `GET /health` on this host's SERVER_PORT answers 200 (the API checks Redis itself).
- worker: a heartbeat `Keys.worker_status(id)` exists for this worker: WORKER_ID when set,
  otherwise any worker whose `host` field is this host name (ids default to `host-pid`).
- producer: Redis answers PING. The supervisor has no heartbeat key of its own, and
  per-source producer keys only exist while it captures something.
- alerts: a `lookout alerts` process on this host has a heartbeat `Keys.delivery_status(id)`.
- livekit: a LiveKit bridge on this host has a heartbeat `Keys.livekit_bridge(id)` (it is
  healthy while it retries an unreachable server: its heartbeat lists the errors).
- auto: the role is read from PID 1's command line (`lookout worker ...`), so one image
  healthcheck fits every service; other subcommands fall back to the producer check.

It prints one line saying what it found, which `docker inspect` shows under Health.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import redis
from redis.exceptions import RedisClusterException

from shared.keys import Keys
from shared.record_fields import RecordError, decode_hash
from shared.settings import Settings, SettingsError
from shared.settings_env import load_settings
from shared.status_records import LivekitBeat, WorkerBeat

ROLES = ("api", "worker", "producer", "alerts", "livekit", "auto")
TIMEOUT_S = 3.0


class Unhealthy(Exception):
    """The check failed; the message says why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("role", choices=ROLES, help="which process to check (auto: PID 1's)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per network call")


def role_from_cmdline(argv: Sequence[str]) -> str:
    """The health role of a `lookout SUBCOMMAND ...` command line (producer when unknown).

    PID 1 may be an init (`docker-init -- lookout worker`) or the venv's python running the
    `lookout` script; the subcommand is the first argument after `lookout` that is no option.
    """
    names = [Path(arg).name for arg in argv]
    if "lookout" not in names:
        return "producer"
    rest = iter(argv[names.index("lookout") + 1 :])
    for arg in rest:
        if arg == "--env-file":
            next(rest, None)
        elif not arg.startswith("-"):
            return arg if arg in ("api", "worker", "alerts", "livekit") else "producer"
    return "producer"


def pid1_cmdline(proc: Path = Path("/proc/1/cmdline")) -> list[str]:
    """PID 1's arguments (the container's main process), or [] when unreadable."""
    try:
        raw = proc.read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def check_api(settings: Settings, timeout: float) -> str:
    # The API may bind 0.0.0.0; the check always asks over loopback, inside the container.
    url = f"http://127.0.0.1:{settings.server_port}/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return f"api ok: {url} answered {response.status}"
    except urllib.error.HTTPError as exc:
        raise Unhealthy(f"api unhealthy: {url} answered {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise Unhealthy(f"api unreachable: {url}: {exc}") from None


def _redis(settings: Settings, timeout: float) -> redis.Redis:
    from shared.bus import connect_redis_sync

    try:
        client = connect_redis_sync(
            settings.redis_url, timeout=timeout, cluster=settings.redis_cluster
        )
    except RedisClusterException as exc:  # a cluster client connects at once
        raise Unhealthy(f"Redis unreachable at {settings.redis_url}: {exc}") from None
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        raise Unhealthy(f"Redis unreachable at {settings.redis_url}: {exc}") from None
    return client


def check_producer(settings: Settings, timeout: float) -> str:
    _redis(settings, timeout).close()
    return f"producer ok: Redis at {settings.redis_url} answers"


def _beat(client: redis.Redis, key: bytes) -> WorkerBeat:
    """The heartbeat at `key`; an expired or hand-edited one is an empty beat (no host)."""
    try:
        return WorkerBeat.from_fields(client.hgetall(key))  # type: ignore[arg-type]
    except RecordError:
        return WorkerBeat()


@contextlib.contextmanager
def _session(settings: Settings, timeout: float) -> Iterator[redis.Redis]:
    """A client for one check; a Redis error during it is Unhealthy, and it is closed after."""
    client = _redis(settings, timeout)
    try:
        yield client
    except redis.RedisError as exc:
        raise Unhealthy(f"Redis error at {settings.redis_url}: {exc}") from None
    finally:
        client.close()


def check_worker(settings: Settings, timeout: float, host: str | None = None) -> str:
    keys = Keys(settings.key_prefix)
    host = host or socket.gethostname()
    with _session(settings, timeout) as client:
        if settings.worker_id:
            if client.exists(keys.worker_status(settings.worker_id)):
                return f"worker ok: heartbeat of {settings.worker_id}"
            raise Unhealthy(f"worker unhealthy: no heartbeat of {settings.worker_id}")
        for key in client.scan_iter(match=keys.worker_pattern, count=100):
            if _beat(client, key).host == host:
                return f"worker ok: heartbeat {key.decode()}"
        raise Unhealthy(f"worker unhealthy: no heartbeat from host {host}")


def check_alerts(settings: Settings, timeout: float, host: str | None = None) -> str:
    """`lookout alerts` beats in `Keys.delivery_status`: one from this host is healthy."""
    keys = Keys(settings.key_prefix)
    host = host or socket.gethostname()
    with _session(settings, timeout) as client:
        for key in client.scan_iter(match=keys.delivery_pattern, count=100):
            if decode_hash(client.hgetall(key)).get("host") == host:  # type: ignore[arg-type]
                return f"alerts ok: heartbeat {key.decode()}"
        raise Unhealthy(f"alerts unhealthy: no delivery heartbeat from host {host}")


def check_livekit(settings: Settings, timeout: float, host: str | None = None) -> str:
    """`lookout livekit` beats in `Keys.livekit_bridge`: one from this host is healthy."""
    keys = Keys(settings.key_prefix)
    host = host or socket.gethostname()
    with _session(settings, timeout) as client:
        for key in client.scan_iter(match=keys.livekit_bridge("*"), count=100):
            try:
                beat = LivekitBeat.from_fields(client.hgetall(key))  # type: ignore[arg-type]
            except RecordError:
                continue
            if beat.host == host:
                return f"livekit ok: heartbeat {key.decode()} (rooms: {beat.rooms or 'none'})"
        raise Unhealthy(f"livekit unhealthy: no bridge heartbeat from host {host}")


def check(role: str, settings: Settings, timeout: float = TIMEOUT_S) -> str:
    """Run the check of `role`; return a one-line report, or raise Unhealthy."""
    if role == "auto":
        role = role_from_cmdline(pid1_cmdline())
    if role == "api":
        return check_api(settings, timeout)
    if role == "worker":
        return check_worker(settings, timeout)
    if role == "alerts":
        return check_alerts(settings, timeout)
    if role == "livekit":
        return check_livekit(settings, timeout)
    return check_producer(settings, timeout)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print what the check found; 0 when healthy, 1 when not."""
    try:
        print(check(args.role, settings, args.timeout))
    except Unhealthy as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m lookout.health ROLE`, without the full CLI (and its imports)."""
    parser = argparse.ArgumentParser(prog="lookout health", description=__doc__.split("\n")[0])
    parser.add_argument("--env-file", default=".env", help="settings file (default .env)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = load_settings(env_file=args.env_file)
    except SettingsError as exc:
        print(f"lookout health: configuration error: {exc}", file=sys.stderr)
        return 2
    return run(args, settings)


if __name__ == "__main__":
    sys.exit(main())
