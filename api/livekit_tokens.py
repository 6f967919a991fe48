"""LiveKit room tokens for browsers and apps (`POST /api/sources/{name}/livekit-token`).

The token is narrower than the API key that asks for it, like a media token (api/tokens.py):
- one room, the source's (`LIVEKIT_ROOM_PREFIX + name`), taken from the path, never the body;
- a view key (or a caller on an open API asking for nothing more) may only subscribe; a control
  key may also publish a camera (no microphone, no screen) that becomes the source's producer;
- nobody but the bridge publishes data, so the commentary on topic `lookout` cannot be forged;
- a random `viewer-`/`camera-` identity, never the bridge's;
- joining allowed for LIVEKIT_TOKEN_TTL seconds (a joined session stays).
It is signed with LIVEKIT_API_SECRET (`livekit.api.AccessToken`), which never leaves the server.
"""

from __future__ import annotations

import datetime
import time
import uuid
from dataclasses import dataclass

from livekit.api import AccessToken, VideoGrants

from shared.livekit_rooms import room_name
from shared.settings import Settings

CAMERA_SOURCES = ["camera"]  # what a publishing client may publish (LiveKit TrackSource names)


@dataclass(frozen=True)
class LivekitGrant:
    """A minted room token and what it allows."""

    token: str
    url: str
    room: str
    identity: str
    can_publish: bool
    expires_at: float


def livekit_configured(settings: Settings) -> bool:
    """Whether the API can mint LiveKit tokens (a URL for browsers, a key and a secret)."""
    return bool(
        (settings.livekit_public_url or settings.livekit_url)
        and settings.livekit_api_key
        and settings.livekit_api_secret
    )


def mint_livekit_token(settings: Settings, source: str, publish: bool) -> LivekitGrant:
    """A token for `source`'s room; the caller has checked that `publish` is allowed."""
    room = room_name(settings, source)
    identity = f"{'camera' if publish else 'viewer'}-{uuid.uuid4().hex[:12]}"
    grants = VideoGrants(
        room_join=True,
        room=room,
        can_subscribe=True,
        can_publish=publish,
        can_publish_data=False,
        can_publish_sources=CAMERA_SOURCES if publish else None,
        can_update_own_metadata=False,
    )
    ttl = settings.livekit_token_ttl
    token = (
        AccessToken(settings.livekit_api_key, settings.livekit_api_secret)
        .with_identity(identity)
        .with_name(identity)
        .with_grants(grants)
        .with_ttl(datetime.timedelta(seconds=ttl))
        .to_jwt()
    )
    url = settings.livekit_public_url or settings.livekit_url
    return LivekitGrant(token, url, room, identity, publish, time.time() + ttl)
