"""The alert delivery's records in Redis, and the summary `/api/status` shows of them.

`lookout alerts` (alerts/) keeps webhook jobs in Redis so they survive its restarts: the job
(`WebhookJob`, JSON in `Keys.webhook_jobs`), when it is due (`Keys.webhook_due`, a sorted set)
and, once retried for WEBHOOK_RETRY_FOR seconds, the dead letter (`Keys.webhook_dead`). Each
alerts process beats in `Keys.delivery_status` (a `DeliveryBeat`). `delivery_overview` reads
it all back for the API.
"""

from __future__ import annotations

import msgspec
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.record_fields import Fields, RecordError, as_text, decode_hash

DEAD_SHOWN = 10  # newest dead letters listed in /api/status


class WebhookJob(msgspec.Struct, kw_only=True):
    """One alert to POST to one URL, and how its tries went."""

    id: str  # `ALERT@URLHASH`: the same alert to the same URL is one job
    alert_id: str
    source: str
    rule_id: str
    url: str
    body: str  # the JSON sent, fixed at enqueue so every retry is byte-identical
    created_at: float
    attempts: int = 0
    last_error: str = ""
    last_try: float = 0.0


class DeliveryBeat(msgspec.Struct, frozen=True, kw_only=True):
    """Heartbeat of one `lookout alerts` process."""

    delivery: str = ""
    pid: int = 0
    host: str = ""
    started_at: float = 0.0
    beat_ts: float = 0.0
    mqtt: str = "off"  # off | connected | disconnected
    delivered: int = 0  # webhooks answered 2xx since start
    retried: int = 0
    dead: int = 0

    def to_fields(self) -> dict[str, str]:
        return {name: str(getattr(self, name)) for name in self.__struct_fields__}

    @classmethod
    def from_fields(cls, fields: Fields) -> DeliveryBeat:
        text = decode_hash(fields)
        try:
            return msgspec.convert(text, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise RecordError(f"not a delivery heartbeat: {exc}") from None


class DeadLetter(msgspec.Struct, frozen=True):
    id: str
    alert_id: str
    source: str
    url: str  # without query and password
    attempts: int
    last_error: str
    last_try: float


class DeliveryStatus(msgspec.Struct, frozen=True):
    """What /api/status shows of alert delivery."""

    processes: list[DeliveryBeat]
    webhooks_queued: int
    webhooks_dead: int
    dead_letters: list[DeadLetter]  # the newest DEAD_SHOWN


_job = msgspec.json.Decoder(WebhookJob)


def decode_job(raw: bytes | str) -> WebhookJob | None:
    """A stored job, or None for an unreadable one."""
    try:
        return _job.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def short_url(url: str) -> str:
    """`url` without password and query, for status pages and logs."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


async def delivery_overview(redis: aioredis.Redis, keys: Keys) -> DeliveryStatus:
    """The alerts processes, the webhook queue's depth and the newest dead letters."""
    processes: list[DeliveryBeat] = []
    async for key in redis.scan_iter(match=keys.delivery_pattern, count=100):
        raw = await redis.hgetall(as_text(key))  # type: ignore[misc]
        try:
            processes.append(DeliveryBeat.from_fields(raw))
        except RecordError:
            continue
    dead_raw = await redis.hgetall(keys.webhook_dead)  # type: ignore[misc]
    dead = [job for job in map(decode_job, dead_raw.values()) if job is not None]
    dead.sort(key=lambda job: job.last_try, reverse=True)
    letters = [
        DeadLetter(
            j.id, j.alert_id, j.source, short_url(j.url), j.attempts, j.last_error, j.last_try
        )
        for j in dead[:DEAD_SHOWN]
    ]
    queued = int(await redis.zcard(keys.webhook_due))
    return DeliveryStatus(sorted(processes, key=lambda p: p.delivery), queued, len(dead), letters)
