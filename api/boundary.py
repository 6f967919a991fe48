"""The edge of the API: which address it may listen on, and which Host, Origin and Content-Type
a request may carry. Checked by an app-wide guard before the key guard (api/auth.py).

- **Listening**: with no API keys, only on loopback, unless ALLOW_OPEN=true (api/cli.py).
- **Host** must be a loopback name, the bind address or one of ALLOWED_HOSTS, else 400. A page
  on another site that rebinds its DNS name to this machine still sends its own name as Host,
  so it cannot read what the API serves. `/health` (opt `any_host`) answers any Host: it tells
  nothing, and orchestrators probe it by address.
- **Origin**: a state-changing request (POST, PUT, PATCH, DELETE) or the ingest WebSocket that
  carries an `Origin` must come from the API's own origin or one in CORS_ORIGINS, else 403.
  Clients outside browsers send no Origin; keys guard them.
- **Content-Type**: a route that takes a JSON body needs `application/json`, else 415. text/plain
  and form encodings are what another site's form or "simple" fetch can send without asking.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import ClientException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from api.errors import UnsupportedMediaType
from shared.settings import Settings

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
ANY_ADDRESS = ("", "0.0.0.0", "::")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON = "application/json"


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1)."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(value: str) -> str:
    """The name part of a Host header or ALLOWED_HOSTS entry: no port, brackets or final dot."""
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:8199
        value = value[1 : value.find("]")] if "]" in value else value[1:]
    elif value.count(":") == 1:  # name:port (a bare IPv6 address has several colons)
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


class Boundary:
    """The allowed hosts and origins of this API process, from the settings."""

    def __init__(self, settings: Settings) -> None:
        hosts = split_list(settings.allowed_hosts)
        self.any_host = "*" in hosts
        # Loopback names are always safe: a rebinding page sends its own name, never these.
        bind = host_name(settings.server_host)
        hosts += [*LOOPBACK_NAMES, *([] if bind in ANY_ADDRESS else [bind])]
        self.hosts = frozenset(host_name(h) for h in hosts if h != "*")
        self.origins = frozenset(o.rstrip("/").lower() for o in split_list(settings.cors_origins))

    def check_host(self, header: str | None) -> None:
        """400 unless `header` names an allowed host."""
        if self.any_host:
            return
        if not header:
            raise ClientException(detail="a Host header is required")
        if host_name(header) not in self.hosts:
            raise ClientException(
                detail=f"host {host_name(header)!r} is not served here: add it to ALLOWED_HOSTS"
            )

    def check_origin(self, origin: str | None, host: str | None) -> None:
        """403 if a browser sent this from a page of another origin than ours or CORS_ORIGINS."""
        if origin is None:
            return
        normalized = origin.strip().rstrip("/").lower()
        if normalized in self.origins:
            return
        netloc = urlsplit(normalized).netloc if "://" in normalized else ""
        if netloc and host and netloc == host.strip().lower():
            return  # the page this API served itself
        raise PermissionDeniedException(
            detail=f"requests from origin {origin!r} are not allowed: add it to CORS_ORIGINS"
        )


def takes_json(handler: BaseRouteHandler) -> bool:
    """True for a route whose handler reads a JSON body (`data`)."""
    return "data" in handler.parsed_fn_signature.parameters


def check_content_type(value: str | None) -> None:
    """415 unless the media type is exactly application/json (parameters allowed)."""
    media_type = (value or "").split(";", 1)[0].strip().lower()
    if media_type != JSON:
        shown = media_type or "none"
        raise UnsupportedMediaType(detail=f"send the body as {JSON} (Content-Type was {shown})")


async def check_boundary(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Guard on every route: Host, then Origin where it matters, then the body's type."""
    boundary: Boundary = connection.app.state.lookout.boundary
    host = connection.headers.get("host")
    if not handler.opt.get("any_host"):
        boundary.check_host(host)
    method = connection.scope.get("method")
    websocket = connection.scope["type"] == ScopeType.WEBSOCKET
    if websocket or method in STATE_CHANGING:
        boundary.check_origin(connection.headers.get("origin"), host)
    if method in STATE_CHANGING and takes_json(handler):
        check_content_type(connection.headers.get("content-type"))
