"""What one API process holds: settings, the Redis client, the relays, keys and metrics.

Created in `create_app`, connected on startup, closed on shutdown; handlers get it (and the
services built on it) through dependency injection.
"""

from __future__ import annotations

import logging
from pathlib import Path

import redis.asyncio as aioredis

from api.audio import OpusTap, PcmTap
from api.auth import KeyRing, load_keys
from api.boundary import Boundary
from api.frames import FrameHub
from api.hub import MessageHub
from api.metrics import ApiMetrics
from api.sse import SseTap
from shared.bus import REDIS_ERRORS, connect_redis
from shared.claims import Claims
from shared.keys import Keys
from shared.record_fields import RecordError
from shared.records import FrameRecord
from shared.settings import Settings
from shared.sources import SourceRegistry

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"


class AppState:
    """Per-process objects shared by all requests (the API itself keeps no user state)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.keyring = KeyRing(load_keys(settings))
        self.boundary = Boundary(settings)
        self.metrics = ApiMetrics()
        self.redis: aioredis.Redis = connect_redis(
            settings.redis_url, cluster=settings.redis_cluster
        )
        self.claims = Claims(self.redis, self.keys, int(settings.claim_ttl * 1000))
        self.registry = SourceRegistry(self.redis, self.keys, settings.default_instruction)
        self.hub = MessageHub(
            settings.redis_url,
            self.keys,
            self.metrics,
            settings.viewer_queue,
            {"sse": SseTap, "audio": PcmTap, "opus": OpusTap},
            settings.sse_keepalive,
            cluster=settings.redis_cluster,
        )
        self.frames = FrameHub(self.redis, self.keys, self.metrics)
        self.page_html = (STATIC_DIR / "index.html").read_bytes()

    async def count_key_use(self, fingerprint: str) -> None:
        """Count one request for the key with `fingerprint` (never the key itself)."""
        try:
            await self.redis.hincrby(self.keys.key_usage, fingerprint, 1)  # type: ignore[misc]
        except REDIS_ERRORS as exc:
            # Usage counting must not turn a Redis hiccup into a failed request.
            log.warning("could not count API key use: %s", exc)

    async def newest_frame(self, source: str) -> FrameRecord | None:
        """The newest readable frame of `source`, or None."""
        entries = await self.redis.xrevrange(self.keys.frames(source), count=1)
        if not entries:
            return None
        try:
            return FrameRecord.from_fields(entries[0][1])
        except RecordError:
            return None

    def viewers(self, source: str | None = None) -> int:
        """SSE, audio and MJPEG viewers on this process (of `source`, or all)."""
        return self.hub.viewer_count(source) + self.frames.viewer_count(source)

    async def close(self) -> None:
        await self.hub.close()
        await self.frames.close()
        await self.redis.aclose()
