"""Short-lived media tokens: what a browser puts in URLs instead of its API key.

EventSource, <img> and WebSocket URLs cannot carry headers, and a key in a query string ends
up in access logs, browser history and Referer headers (PITFALLS.md). A client with a key asks
`POST /api/tokens` for a token and uses `?token=` in such URLs. A token names its key by
fingerprint, carries the key's scope and an expiry, and is signed with the key itself
(HMAC-SHA256), so every replica can check it with nothing but the configured keys, and
removing a key revokes its tokens.

Format: `v1.<fingerprint>.<scope>.<expires epoch s>.<signature hex>`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # api.auth imports this module
    from api.auth import ApiKey, KeyRing

VERSION = "v1"


class TokenError(ValueError):
    """A token that is malformed, expired, or not signed by a configured key."""


@dataclass(frozen=True)
class MediaToken:
    token: str
    scope: str
    expires_at: float


def _signature(key: ApiKey, message: str) -> str:
    return hmac.new(key.key.encode(), message.encode(), hashlib.sha256).hexdigest()


def issue(key: ApiKey, ttl: float, now: float | None = None) -> MediaToken:
    """A token for `key`'s scope that expires `ttl` seconds from now."""
    expires = int((time.time() if now is None else now) + ttl)
    message = f"{VERSION}.{key.fingerprint}.{key.scope}.{expires}"
    return MediaToken(f"{message}.{_signature(key, message)}", key.scope, float(expires))


def verify(ring: KeyRing, token: str, now: float | None = None) -> ApiKey:
    """The key that signed `token`, with the token's scope; TokenError says why not."""
    parts = token.split(".")
    if len(parts) != 5 or parts[0] != VERSION or not parts[3].isdigit():
        raise TokenError("malformed token")
    _, fingerprint, scope, expires, signature = parts
    if int(expires) < (time.time() if now is None else now):
        raise TokenError("token expired: ask POST /api/tokens for a new one")
    message = ".".join(parts[:4])
    for key in ring.keys:
        if key.fingerprint == fingerprint and key.scope == scope:
            if hmac.compare_digest(_signature(key, message), signature):
                return key
    raise TokenError("invalid token")
