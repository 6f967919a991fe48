"""`lookout livekit`: serve LiveKit-enabled sources' rooms; `--check` tests the server once;
`--init-env` writes a fresh LIVEKIT_API_KEY/LIVEKIT_API_SECRET pair into the env file.

Exit codes: 0 stopped by a signal (or check passed, keys written); 1 the check failed;
2 LiveKit is not configured (LIVEKIT_URL, key or secret missing).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
from pathlib import Path

from shared.settings import Settings

log = logging.getLogger(__name__)

KEY_NAMES = ("LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")
DEFAULT_PUBLIC_URL = "ws://localhost:7880"  # the compose profile's server, seen from this host


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bridge-id", default="", help="name in room claims and heartbeat")
    parser.add_argument(
        "--check",
        action="store_true",
        help="check that LIVEKIT_URL answers and accepts the key and secret, then exit",
    )
    parser.add_argument(
        "--init-env",
        action="store_true",
        help="write a new LIVEKIT_API_KEY and LIVEKIT_API_SECRET into the env file (--env-file) "
        "unless it has them; the compose `livekit` profile gives the server the same pair",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.init_env:
        print(init_env(Path(args.env_file)))
        return 0
    missing = [
        name
        for name, value in (
            ("LIVEKIT_URL", settings.livekit_url),
            *zip(KEY_NAMES, (settings.livekit_api_key, settings.livekit_api_secret), strict=True),
        )
        if not value
    ]
    if missing:
        print(f"lookout livekit: set {', '.join(missing)} (docs/livekit.md)", file=sys.stderr)
        return 2
    if args.check:
        return asyncio.run(_check(settings))
    return asyncio.run(_serve(settings, args.bridge_id))


def init_env(path: Path) -> str:
    """Append a random key and secret to `path` (created mode 600) unless both are set there,
    and LIVEKIT_PUBLIC_URL (the compose server on this machine) unless it is set."""
    from shared.settings_env import read_env_file

    present = read_env_file(path) if path.is_file() else {}
    wanted = {
        "LIVEKIT_API_KEY": f"lookout{secrets.token_hex(4)}",
        "LIVEKIT_API_SECRET": secrets.token_urlsafe(32),
        "LIVEKIT_PUBLIC_URL": DEFAULT_PUBLIC_URL,
    }
    if all(present.get(name) for name in KEY_NAMES):
        del wanted["LIVEKIT_API_KEY"], wanted["LIVEKIT_API_SECRET"]  # never rotate a pair
    missing = {name: value for name, value in wanted.items() if not present.get(name)}
    if not missing:
        return f"{path} already has {', '.join(KEY_NAMES)} and LIVEKIT_PUBLIC_URL; left as it is"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        if path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            out.write("\n")
        lines = [f"{name}={value}" for name, value in missing.items()]
        out.write("# LiveKit (lookout livekit --init-env)\n" + "\n".join(lines) + "\n")
    return f"wrote {', '.join(missing)} to {path}"


async def _check(settings: Settings) -> int:
    from bridge.livekit_room import check_server
    from bridge.room import RoomError
    from shared.livekit_rooms import room_name

    try:
        await check_server(settings, room_name(settings, "check"))
    except RoomError as exc:
        print(f"lookout livekit: {exc}", file=sys.stderr)
        return 1
    print(f"LiveKit at {settings.livekit_url} answers and accepts the key")
    return 0


async def _serve(settings: Settings, bridge_id: str) -> int:
    from bridge.livekit_room import LiveKitRoom
    from bridge.service import Bridge, new_bridge_id
    from shared.bus import connect_redis

    redis = connect_redis(settings.redis_url, cluster=settings.redis_cluster)
    bridge_id = bridge_id or new_bridge_id()
    bridge = Bridge(redis, settings, lambda name: LiveKitRoom(settings, name, bridge_id), bridge_id)
    try:
        await bridge.run()
    finally:
        await redis.aclose()
    return 0
