"""API keys: `key:scope` pairs from API_KEYS and API_KEYS_FILE, checked by a route guard.

With no keys configured the API is open (the local default: it then listens on loopback only,
see api/cli.py). With keys, every guarded route needs one as `Authorization: Bearer KEY`.
Keys are never accepted in URLs (`?key=` answers 401): URLs that cannot set headers
(EventSource, <img>, WebSocket) carry a short-lived `?token=` (api/tokens.py), which works
only on the media routes of its one source. Scope `view` may watch; `control` may also change
things. Keys are compared in constant time, counted in Redis by fingerprint, never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from api.errors import FieldError
from api.tokens import INGEST, MediaToken, TokenError, issue, verify
from shared.settings import Settings, SettingsError

log = logging.getLogger(__name__)

VIEW = "view"
CONTROL = "control"
SCOPES = (VIEW, CONTROL)


@dataclass(frozen=True)
class ApiKey:
    key: str
    scope: str

    @property
    def fingerprint(self) -> str:
        """A stable, non-reversible name for the key (usage counts, logs)."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:12]


def parse_keys(text: str, where: str) -> list[ApiKey]:
    """Keys from `key:scope` items separated by commas or newlines; `#` starts a comment."""
    keys: list[ApiKey] = []
    for raw in text.replace(",", "\n").splitlines():
        item = raw.split("#", 1)[0].strip()
        if not item:
            continue
        key, _, scope = item.rpartition(":")
        scope = scope.strip().lower()
        if not key.strip() or scope not in SCOPES:
            # The message must not echo the key itself.
            raise SettingsError(f"{where}: each entry must be KEY:view or KEY:control")
        keys.append(ApiKey(key.strip(), scope))
    return keys


def load_keys(settings: Settings) -> list[ApiKey]:
    """All keys from API_KEYS and the file named by API_KEYS_FILE."""
    keys = parse_keys(settings.api_keys, "API_KEYS")
    if settings.api_keys_file:
        path = Path(settings.api_keys_file)
        if not path.is_file():
            raise SettingsError(f"API_KEYS_FILE={settings.api_keys_file!r}: no such file")
        keys += parse_keys(path.read_text(), f"API_KEYS_FILE {path}")
    return keys


class KeyRing:
    """The configured keys; `check` finds the key a connection presents."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self.keys = keys

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def match(self, presented: str) -> ApiKey | None:
        found: ApiKey | None = None
        for candidate in self.keys:
            # Compare against every key so timing does not reveal which one matched.
            if hmac.compare_digest(candidate.key.encode(), presented.encode()):
                found = candidate
        return found


def _unauthorized(detail: str) -> NotAuthorizedException:
    return NotAuthorizedException(detail=detail, headers={"WWW-Authenticate": "Bearer"})


def authenticate(ring: KeyRing, connection: ASGIConnection[Any, Any, Any, Any]) -> ApiKey:
    """The key in the `Authorization: Bearer` header; 401 if missing, wrong, or in the URL."""
    if "key" in connection.query_params:
        raise _unauthorized(
            "API keys are not accepted in URLs (they end up in logs): send "
            "'Authorization: Bearer KEY', or use '?token=' from POST /api/tokens on media URLs"
        )
    header = connection.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        raise _unauthorized(
            "API key required: send 'Authorization: Bearer KEY' "
            "(media URLs: '?token=' from POST /api/tokens)"
        )
    key = ring.match(header[7:].strip())
    if key is None:
        raise _unauthorized("invalid API key")
    return key


def authorize_token(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler, token: str
) -> ApiKey:
    """The key behind `token` if it may open this route for this source; 401 or 403 if not."""
    allowed = handler.opt.get("token")
    if allowed is None:
        raise _unauthorized(
            "media tokens work only on media URLs: this route needs 'Authorization: Bearer KEY'"
        )
    state = connection.app.state.lookout
    try:
        grant = verify(state.keyring, token, state.settings.media_token_max_ttl)
    except TokenError as exc:
        raise _unauthorized(str(exc)) from None
    if grant.source != connection.path_params.get("name"):
        raise PermissionDeniedException(detail=f"this token is for source {grant.source!r} only")
    if allowed == INGEST and (grant.scope != INGEST or grant.key.scope != CONTROL):
        raise PermissionDeniedException(
            detail="this token may not send frames: a control key mints one with scope 'ingest'"
        )
    return grant.key


async def require_scope(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Guard: 401 without a valid key (or a token this route takes), 403 when it may not."""
    state = connection.app.state.lookout
    ring: KeyRing = state.keyring
    if not ring.enabled:
        return
    token = connection.query_params.get("token")
    if token is not None and "authorization" not in connection.headers:
        # The token's own checks (its source, its scope) stand in for the route's scope.
        key = authorize_token(connection, handler, token)
        await state.count_key_use(key.fingerprint)
        return
    key = authenticate(ring, connection)
    await state.count_key_use(key.fingerprint)
    if handler.opt.get("scope", VIEW) == CONTROL and key.scope != CONTROL:
        raise PermissionDeniedException(detail="this API key may view but not control")


def mint(key: ApiKey, source: str, scope: str, ttl: float | None, settings: Settings) -> MediaToken:
    """A media token signed by `key`; 403 for ingest with a view key, 422 for a too long ttl."""
    if scope == INGEST and key.scope != CONTROL:
        raise PermissionDeniedException(detail="only a control key may mint an ingest token")
    lifetime = settings.media_token_ttl if ttl is None else ttl
    if lifetime > settings.media_token_max_ttl:
        raise FieldError("ttl", f"at most MEDIA_TOKEN_MAX_TTL={settings.media_token_max_ttl:g} s")
    return issue(key, scope, source, lifetime)
