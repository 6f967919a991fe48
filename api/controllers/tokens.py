"""Short-lived media tokens for URLs that cannot carry an Authorization header."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post
from litestar.exceptions import ClientException

from api import routes
from api.auth import authenticate, require_scope
from api.controllers import SECURED, errors
from api.schemas import TokenOut
from api.state import AppState
from api.tokens import issue


class TokensController(Controller):
    tags = ["auth"]
    guards = [require_scope]
    security = SECURED

    @post(routes.TOKENS, name="auth:token", operation_id="createToken", responses=errors(400, 401))
    async def token(self, request: Request[Any, Any, Any], lookout: AppState) -> TokenOut:
        """A token with this key's scope, valid MEDIA_TOKEN_TTL seconds: put it in EventSource,
        MJPEG, <img> and WebSocket URLs as `?token=` so the key itself never lands in a URL."""
        if not lookout.keyring.enabled:
            raise ClientException(detail="no API keys are configured: URLs need no token")
        minted = issue(authenticate(lookout.keyring, request), lookout.settings.media_token_ttl)
        return TokenOut(minted.token, minted.scope, minted.expires_at)
