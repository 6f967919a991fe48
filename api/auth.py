"""API keys: `key:scope` pairs from API_KEYS and API_KEYS_FILE, checked by a route guard.

With no keys configured the API is open (the local default). With keys, every guarded route
needs one, as `Authorization: Bearer KEY` or, for EventSource, <img> and WebSocket URLs
that cannot set headers, a short-lived `?token=` (api/tokens.py) or `?key=KEY`.
Scope `view` may watch; `control` may also change
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

from api.tokens import TokenError, verify
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


def presented_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The key in the Authorization header, else in the `key` query parameter."""
    header = connection.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    value = connection.query_params.get("key")
    return value or None


def authenticate(ring: KeyRing, connection: ASGIConnection[Any, Any, Any, Any]) -> ApiKey:
    """The key a connection presents (header, `?key=` or a `?token=` it signed); 401 if none."""
    presented = presented_key(connection)
    token = connection.query_params.get("token")
    if presented is None and token:
        try:
            return verify(ring, token)
        except TokenError as exc:
            raise NotAuthorizedException(
                detail=str(exc), headers={"WWW-Authenticate": "Bearer"}
            ) from None
    if presented is None:
        raise NotAuthorizedException(
            detail="API key required: send 'Authorization: Bearer KEY', '?token=' or '?key=KEY'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    key = ring.match(presented)
    if key is None:
        raise NotAuthorizedException(
            detail="invalid API key", headers={"WWW-Authenticate": "Bearer"}
        )
    return key


async def require_scope(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Guard: 401 without a valid key, 403 when the key lacks the route's `scope` opt."""
    state = connection.app.state.lookout
    ring: KeyRing = state.keyring
    if not ring.enabled:
        return
    key = authenticate(ring, connection)
    await state.count_key_use(key.fingerprint)
    needed = handler.opt.get("scope", VIEW)
    if needed == CONTROL and key.scope != CONTROL:
        raise PermissionDeniedException(detail="this API key may view but not control")
