"""LiveKit: the server, rooms, tokens and the bridge."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings_groups import var


@dataclass(frozen=True)
class LivekitSettings:
    """The `livekit` group of `Settings`, its variables in the order the docs list them."""

    livekit_url: str = var(
        "",
        "LiveKit server the bridge (`lookout livekit`) joins, ws:// or wss:// (empty: LiveKit off)",
        "livekit",
    )
    livekit_public_url: str = var(
        "",
        "LiveKit URL handed to browsers with their tokens (empty: LIVEKIT_URL)",
        "livekit",
    )
    livekit_api_key: str = var("", "API key of the LiveKit server", "livekit")
    livekit_api_secret: str = var(
        "", "API secret of the LiveKit server (signs room tokens)", "livekit", secret=True
    )
    livekit_room_prefix: str = var(
        "lookout-", "A source's LiveKit room is this prefix plus the source name", "livekit"
    )
    livekit_sources: str = var(
        "*",
        "Sources the bridge brings to LiveKit by default: `*` (all), comma-separated names "
        "(joined even before they exist, for cameras sent in), or empty (none); a source's "
        "`livekit` option overrides it",
        "livekit",
    )
    livekit_token_ttl: float = var(
        300.0,
        "Seconds a LiveKit room token from POST /api/sources/NAME/livekit-token allows joining",
        "livekit",
        lo=10,
        hi=86_400,
    )
    livekit_max_rooms: int = var(
        32, "Most rooms one bridge process serves at once", "livekit", lo=1, hi=10_000
    )
    livekit_camera_in: bool = var(
        True,
        "A camera published in a source's room becomes that source's producer",
        "livekit",
    )
