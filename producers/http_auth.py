"""HTTP authentication for cameras: Digest (RFC 7616, as most IP cameras ask) and Basic.

The camera says what it wants in `WWW-Authenticate` on a 401. Digest is used when offered
(MD5, SHA-256 and their `-sess` forms, `qop=auth` or none); else Basic, also for a camera that
answers 401 with no challenge at all. Credentials come from the URL
(`http://user:password@camera/...`), which is how camera URLs are written; they are never
sent before the camera asked, so a Digest camera never sees the password in the clear.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

_HASHES: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda data: hashlib.md5(data).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
}
_PARAM = re.compile(r'([\w-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')


class AuthError(ValueError):
    """The camera asks for an authentication Lookout cannot give."""


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str

    def __repr__(self) -> str:  # never in a log or a traceback
        return f"Credentials(user={self.user!r}, password='***')"


def credentials_from_url(url: str) -> Credentials | None:
    """`user:password` of an `http://user:password@host/...` URL, percent-decoded."""
    parts = urlsplit(url)
    if parts.username is None:
        return None
    return Credentials(unquote(parts.username), unquote(parts.password or ""))


def authorization(
    challenges: Sequence[str], creds: Credentials, method: str, uri: str, cnonce: str = ""
) -> str:
    """The `Authorization` value answering the camera's `WWW-Authenticate` challenges."""
    for challenge in challenges:
        scheme, _, rest = challenge.strip().partition(" ")
        if scheme.lower() == "digest":
            return digest(parse_params(rest), creds, method, uri, cnonce or secrets.token_hex(8))
    return basic(creds)


def basic(creds: Credentials) -> str:
    token = f"{creds.user}:{creds.password}".encode()
    return "Basic " + base64.b64encode(token).decode()


def parse_params(text: str) -> dict[str, str]:
    """`realm="cam", qop="auth,auth-int", nonce=abc` as a dict (names lower-cased)."""
    params: dict[str, str] = {}
    for name, raw in _PARAM.findall(text):
        value = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\") if raw[:1] == '"' else raw
        params[name.lower()] = value
    return params


def digest(params: dict[str, str], creds: Credentials, method: str, uri: str, cnonce: str) -> str:
    """A Digest response (RFC 7616, nonce count 1: every request opens a new connection)."""
    algorithm = params.get("algorithm", "MD5").upper()
    session = algorithm.endswith("-SESS")
    hash_ = _HASHES.get(algorithm.removesuffix("-SESS"))
    if hash_ is None:
        raise AuthError(f"the camera asks for Digest with {algorithm}; MD5 and SHA-256 work")
    realm, nonce = params.get("realm", ""), params.get("nonce", "")
    qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
    if qops and "auth" not in qops:
        raise AuthError(f"the camera asks for Digest qop {', '.join(qops)}; qop=auth works")

    def h(*fields: str) -> str:
        return hash_(":".join(fields).encode())

    ha1 = h(creds.user, realm, creds.password)
    if session:
        ha1 = h(ha1, nonce, cnonce)
    ha2 = h(method, uri)
    nc = "00000001"
    response = h(ha1, nonce, nc, cnonce, "auth", ha2) if qops else h(ha1, nonce, ha2)
    fields = {
        "username": creds.user,
        "realm": realm,
        "nonce": nonce,
        "uri": uri,
        "response": response,
    }
    if "opaque" in params:
        fields["opaque"] = params["opaque"]
    text = ", ".join(f'{k}="{_quote(v)}"' for k, v in fields.items())
    text += f", algorithm={params.get('algorithm', 'MD5')}"  # a token: never quoted
    if qops:
        text += f', qop=auth, nc={nc}, cnonce="{cnonce}"'
    return "Digest " + text


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
