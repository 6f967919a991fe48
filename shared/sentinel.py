"""REDIS_URL=redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB].

redis-py reads no Sentinel URL, so Lookout parses it here. The client asks the sentinels for
the master of SERVICE whenever it (re)connects, so a failover looks like any lost connection:
the retry loops reconnect, now to the promoted replica. USER and PASSWORD are the master's;
the sentinels themselves are reached without a password.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.sentinel import Sentinel as SyncSentinel

SCHEME = "redis+sentinel://"
DEFAULT_PORT = 26379


@dataclass(frozen=True)
class SentinelUrl:
    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def is_sentinel_url(url: str) -> bool:
    return url.startswith(SCHEME)


def parse_sentinel_url(url: str) -> SentinelUrl:
    """The parts of a `redis+sentinel://` URL; ValueError saying what is wrong."""
    if not is_sentinel_url(url):
        raise ValueError(f"{url!r} is not a {SCHEME} URL")
    rest = url[len(SCHEME) :]
    netloc, _, path = rest.partition("/")
    auth, _, hosts = netloc.rpartition("@")
    username, _, password = auth.partition(":") if auth else ("", "", "")
    sentinels = [_host_port(part) for part in hosts.split(",") if part]
    parts = [p for p in path.split("/") if p]
    if not sentinels or not parts or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise ValueError(
            f"expected {SCHEME}[[user]:password@]host:port[,host:port...]/service[/db], got {url!r}"
        )
    return SentinelUrl(
        sentinels=sentinels,
        service=unquote(parts[0]),
        db=int(parts[1]) if len(parts) == 2 else 0,
        username=unquote(username) or None,
        password=unquote(password) or None,
    )


def _host_port(part: str) -> tuple[str, int]:
    host, _, port = part.rpartition(":") if ":" in part else (part, "", "")
    if not port:
        return part, DEFAULT_PORT
    if not port.isdigit() or not host:
        raise ValueError(f"bad sentinel address {part!r}: expected host:port")
    return host.strip("[]"), int(port)


class _MasterClient(aioredis.Redis):
    """The master's client; closing it also closes the clients of the sentinels it asked."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        await close_sentinels(self.connection_pool)


async def close_sentinels(pool: aioredis.ConnectionPool) -> None:
    """Close the sentinel clients behind `pool`, if it is a Sentinel pool (else nothing)."""
    if isinstance(pool, SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose()


def sentinel_client(url: str, **options: Any) -> aioredis.Redis:
    """An asyncio client of the master that the sentinels in `url` name."""
    parsed = parse_sentinel_url(url)
    timeouts = {k: options[k] for k in ("socket_timeout", "socket_connect_timeout") if k in options}
    sentinel = Sentinel(parsed.sentinels, sentinel_kwargs=timeouts)  # type: ignore[no-untyped-call]
    client: aioredis.Redis = sentinel.master_for(
        parsed.service,
        redis_class=_MasterClient,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        **options,
    )
    return client


def sync_sentinel_client(url: str, **options: Any) -> redis.Redis:
    """A blocking client of the master (for `lookout health`)."""
    parsed = parse_sentinel_url(url)
    sentinel = SyncSentinel(parsed.sentinels, sentinel_kwargs=dict(options))  # type: ignore[no-untyped-call]
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        parsed.service, db=parsed.db, username=parsed.username, password=parsed.password, **options
    )
    return client
