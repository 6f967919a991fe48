"""Short-lived media tokens for URLs that cannot carry an Authorization header."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post
from litestar.exceptions import ClientException

from api import routes
from api.auth import authenticate, mint, require_scope
from api.controllers import CHANGES, SECURED, errors
from api.schemas import TokenIn, TokenOut
from api.state import AppState


class TokensController(Controller):
    tags = ["auth"]
    guards = [require_scope]  # no `token` opt: a token never mints a token
    security = SECURED

    @post(
        routes.TOKENS,
        name="auth:token",
        operation_id="createToken",
        responses=errors(401, *CHANGES, 413, 422),
    )
    async def token(
        self, request: Request[Any, Any, Any], data: TokenIn, lookout: AppState
    ) -> TokenOut:
        """A token for one source's media URLs (`?token=`), valid MEDIA_TOKEN_TTL seconds (or
        `ttl`, at most MEDIA_TOKEN_MAX_TTL): scope `media` reads events, MJPEG, frame and audio;
        `ingest` (control keys) also sends frames. The key itself never lands in a URL."""
        if not lookout.keyring.enabled:
            raise ClientException(detail="no API keys are configured: URLs need no token")
        key = authenticate(lookout.keyring, request)
        minted = mint(key, data.source, data.scope, data.ttl, lookout.settings)
        return TokenOut(minted.token, minted.scope, minted.source, minted.expires_at)
