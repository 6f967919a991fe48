"""The HTTP API and page: binding, who may call it, media tokens, SSE, ingest limits."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings_groups import var


@dataclass(frozen=True)
class ServerSettings:
    """The `server` group of `Settings`, its variables in the order the docs list them."""

    server_host: str = var(
        "127.0.0.1", "Address the API binds to (0.0.0.0 inside containers)", "server"
    )
    server_port: int = var(8199, "Port the API listens on", "server", lo=1, hi=65535)
    cors_origins: str = var(
        "",
        "Comma-separated origins allowed by CORS, and the only foreign `Origin`s accepted on "
        "state-changing requests and the ingest WebSocket (empty: same origin only)",
        "server",
    )
    allowed_hosts: str = var(
        "",
        "Comma-separated host names the API answers to (`Host` header, port ignored) besides "
        "localhost, 127.0.0.1, ::1 and SERVER_HOST; `*` allows any. Guards against DNS rebinding",
        "server",
    )
    allow_open: bool = var(
        False,
        "Allow listening on a non-loopback address with no API keys (anyone who reaches the "
        "port may control Lookout)",
        "server",
    )
    api_keys: str = var(
        "",
        "API keys as `key:scope` pairs, comma-separated; scope is view or control (empty: no auth)",
        "server",
        secret=True,
    )
    api_keys_file: str = var("", "File with one `key:scope` per line (adds to API_KEYS)", "server")
    instruction_max_chars: int = var(
        500, "Longest instruction a client may set", "server", lo=10, hi=10_000
    )
    media_token_ttl: float = var(
        600.0,
        "Seconds a media token (POST /api/tokens, used as ?token= in URLs) stays valid",
        "server",
        lo=10,
        hi=86_400,
    )
    media_token_max_ttl: float = var(
        3600.0,
        "Longest lifetime a client may ask for a media token; older-looking tokens are refused",
        "server",
        lo=10,
        hi=86_400,
    )
    sse_replay: int = var(
        3, "Commentaries replayed from history when an SSE viewer connects", "server", lo=0, hi=100
    )
    sse_keepalive: float = var(
        15.0, "Seconds between SSE keep-alive comments", "server", lo=1, hi=120
    )
    sse_retry_ms: int = var(
        2000, "Reconnect delay advertised to SSE clients (ms)", "server", lo=100, hi=60_000
    )
    max_frame_bytes: int = var(
        2_000_000,
        "Largest JPEG accepted from a client or producer (bytes)",
        "server",
        lo=10_000,
        hi=50_000_000,
    )
    max_ingest_pixels: int = var(
        0,
        "Largest picture (width x height, read from its header before decoding) accepted from a "
        "client, camera, file or the frames stream (0: MAX_FRAME_EDGE squared, at least 4096x2160)",
        "server",
        lo=0,
        hi=200_000_000,
    )
    viewer_queue: int = var(
        8,
        "Messages buffered per viewer before a slow viewer starts dropping",
        "server",
        lo=1,
        hi=1000,
    )
    api_workers: int = var(
        1,
        "API processes sharing the one port (SO_REUSEPORT), each with its own Redis "
        "subscriptions; `lookout api --workers N` overrides it",
        "server",
        lo=1,
        hi=64,
    )
