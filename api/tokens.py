"""Short-lived media tokens: what a browser puts in URLs instead of its API key.

EventSource, <img> and WebSocket URLs cannot carry headers, and a key in a query string ends
up in access logs, browser history and Referer headers (so the API takes no `?key=`). A client
with a key asks `POST /api/tokens` for a token and uses `?token=` in such URLs.

A token is narrower than the key that minted it:
- one source: it works only on URLs of the source it names;
- scope `media`: reading that source's events, MJPEG, newest frame and audio; scope `ingest`
  (minted only by a control key): those and sending frames over the ingest WebSocket;
- never anything else: not POST /api/tokens (a token cannot mint a token, so it cannot be
  renewed forever), not instructions, sources or questions;
- at most MEDIA_TOKEN_MAX_TTL seconds of life, checked again when it is used.

It names its key by fingerprint and is signed with the key itself (HMAC-SHA256), so every
replica can check it with nothing but the configured keys, and removing a key revokes its tokens.

Format: `v2.<fingerprint>.<scope>.<source>.<expires epoch s>.<signature hex>`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.keys import SOURCE_NAME_RE

if TYPE_CHECKING:  # api.auth imports this module
    from api.auth import ApiKey, KeyRing

VERSION = "v2"
MEDIA = "media"
INGEST = "ingest"
TOKEN_SCOPES = (MEDIA, INGEST)
CLOCK_SLACK_S = 5  # replicas' clocks may differ a little
# ASCII only: str.isdigit() also accepts superscripts and other scripts' digits, which int()
# then refuses (a 500 once).
_EXPIRES = re.compile(r"[0-9]{1,12}")
_FINGERPRINT = re.compile(r"[0-9a-f]{12}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")


class TokenError(ValueError):
    """A token that is malformed, expired, or not signed by a configured key."""


@dataclass(frozen=True)
class MediaToken:
    token: str
    scope: str
    source: str
    expires_at: float


@dataclass(frozen=True)
class Grant:
    """What a valid token allows: `scope` on `source`, on behalf of `key`."""

    key: ApiKey
    scope: str
    source: str


def _signature(key: ApiKey, message: str) -> str:
    return hmac.new(key.key.encode(), message.encode(), hashlib.sha256).hexdigest()


def issue(key: ApiKey, scope: str, source: str, ttl: float, now: float | None = None) -> MediaToken:
    """A token for `scope` on `source`, signed by `key`, that expires `ttl` seconds from now.

    The caller checks that `key` may grant `scope` (api/auth.py `mint`).
    """
    if scope not in TOKEN_SCOPES or not SOURCE_NAME_RE.fullmatch(source):
        raise TokenError(f"cannot issue a token for scope {scope!r} on source {source!r}")
    expires = int((time.time() if now is None else now) + ttl)
    message = f"{VERSION}.{key.fingerprint}.{scope}.{source}.{expires}"
    return MediaToken(f"{message}.{_signature(key, message)}", scope, source, float(expires))


def _parts(token: str) -> list[str]:
    parts = token.split(".")
    if (
        len(parts) != 6
        or parts[0] != VERSION
        or not _FINGERPRINT.fullmatch(parts[1])
        or parts[2] not in TOKEN_SCOPES
        or not SOURCE_NAME_RE.fullmatch(parts[3])
        or not _EXPIRES.fullmatch(parts[4])
        or not _SIGNATURE.fullmatch(parts[5])
    ):
        raise TokenError("malformed token")
    return parts


def verify(ring: KeyRing, token: str, max_ttl: float, now: float | None = None) -> Grant:
    """What `token` grants; TokenError says why it grants nothing."""
    _, fingerprint, scope, source, expires_text, signature = _parts(token)
    now = time.time() if now is None else now
    expires = int(expires_text)
    if expires < now:
        raise TokenError("token expired: ask POST /api/tokens for a new one")
    if expires > now + max_ttl + CLOCK_SLACK_S:
        raise TokenError("token outlives MEDIA_TOKEN_MAX_TTL: ask POST /api/tokens for a new one")
    message = token.rsplit(".", 1)[0]
    found: ApiKey | None = None
    for key in ring.keys:
        # Check every key of that fingerprint, so timing says nothing about which matched.
        if key.fingerprint == fingerprint and hmac.compare_digest(
            _signature(key, message), signature
        ):
            found = key
    if found is None:
        raise TokenError("invalid token")
    return Grant(found, scope, source)
