"""Which sources have a LiveKit room, and what it is called: asked by the bridge and the API.

A source's room is `LIVEKIT_ROOM_PREFIX + name`. Whether it has one: its `livekit` option
(POST /api/sources with `options.livekit`) when set, else LIVEKIT_SOURCES: `*` for every
registered source, a comma-separated list of names (those are wanted even before anything
registers them, so a phone can send its camera into an empty room), or empty for none.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from shared.keys import SOURCE_NAME_RE, Keys
from shared.settings import Settings
from shared.source_control import list_desired
from shared.sources import SourceRegistry

ALL = "*"
DATA_TOPIC = "lookout"  # LiveKit data messages carrying the SSE JSON (text, cycle, notice)
BRIDGE_IDENTITY_PREFIX = "lookout-bridge"  # client tokens never get an identity starting so


def room_name(settings: Settings, source: str) -> str:
    """The LiveKit room of `source`."""
    return f"{settings.livekit_room_prefix}{source}"


def listed_sources(settings: Settings) -> tuple[bool, set[str]]:
    """(every source?, the names LIVEKIT_SOURCES lists); invalid names are ignored."""
    items = {item.strip() for item in settings.livekit_sources.split(",") if item.strip()}
    return ALL in items, {name for name in items if SOURCE_NAME_RE.fullmatch(name)}


async def livekit_sources(redis: aioredis.Redis, settings: Settings) -> list[str]:
    """Every source that should have a LiveKit room now, sorted."""
    every, listed = listed_sources(settings)
    keys = Keys(settings.key_prefix)
    registered = set(await SourceRegistry(redis, keys, settings.default_instruction).names())
    options = {entry.name: entry.options.livekit for entry in await list_desired(redis, settings)}
    wanted = set(listed)
    for name in registered | set(options):
        chosen = options.get(name)
        if chosen is None:
            chosen = every or name in listed
        if chosen:
            wanted.add(name)
        else:
            wanted.discard(name)
    return sorted(wanted)


async def livekit_enabled(redis: aioredis.Redis, settings: Settings, source: str) -> bool:
    """Whether `source` has a LiveKit room (see the module's docstring)."""
    return source in await livekit_sources(redis, settings)
