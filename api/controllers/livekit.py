"""LiveKit room tokens: watch a source over LiveKit, or send a camera into its room."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post
from litestar.exceptions import ClientException, PermissionDeniedException

from api import routes
from api.auth import CONTROL, authenticate, require_scope
from api.controllers import CHANGES, SECURED, errors
from api.errors import Conflict, UnknownSourceError
from api.livekit_tokens import livekit_configured, mint_livekit_token
from api.schemas import LivekitTokenIn, LivekitTokenOut
from api.state import AppState
from shared.keys import SOURCE_NAME_RE
from shared.livekit_rooms import livekit_enabled


class LivekitController(Controller):
    tags = ["livekit"]
    guards = [require_scope]  # no `token` opt: a media token never mints a room token
    security = SECURED

    @post(
        routes.LIVEKIT_TOKEN,
        name="livekit:token",
        operation_id="createLivekitToken",
        responses=errors(401, *CHANGES, 404, 409, 413, 422),
    )
    async def token(
        self, request: Request[Any, Any, Any], name: str, data: LivekitTokenIn, lookout: AppState
    ) -> LivekitTokenOut:
        """A token for the source's LiveKit room, valid for joining LIVEKIT_TOKEN_TTL seconds:
        subscribe only, or with `publish` (control keys) also send a camera, which becomes the
        source's producer. 400 when LiveKit is not configured, 409 when the source has no room."""
        settings = lookout.settings
        if not livekit_configured(settings):
            raise ClientException(
                detail="LiveKit is not configured here (LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET)"
            )
        if data.publish and lookout.keyring.enabled:
            if authenticate(lookout.keyring, request).scope != CONTROL:
                raise PermissionDeniedException(detail="only a control key may publish a camera")
        if not SOURCE_NAME_RE.fullmatch(name):
            raise UnknownSourceError(name)
        if not await livekit_enabled(lookout.redis, settings, name):
            if await lookout.registry.exists(name):
                raise Conflict(
                    detail=f"source {name!r} is not brought to LiveKit (LIVEKIT_SOURCES, option livekit)"
                )
            raise UnknownSourceError(name)
        grant = mint_livekit_token(settings, name, data.publish)
        return LivekitTokenOut(
            grant.token, grant.url, grant.room, grant.identity, grant.can_publish, grant.expires_at
        )
