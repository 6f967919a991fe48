"""Alerts on the bus: how the worker records one, and how readers get them back.

An alert (`AlertEvent`) is written three ways at once: its window's newest JPEG under
`Keys.alert_snapshot` (TTL ALERT_SNAPSHOT_TTL), an entry in the `Keys.alerts` stream (flat
fields, readable with `redis-cli XRANGE`; delivery reads it with a consumer group, so no alert
is lost while `lookout alerts` is down), and the source's events channel (SSE `alert`).
"""

from __future__ import annotations

import re

import msgspec
import redis.asyncio as aioredis

from shared.cluster import publish, transaction
from shared.keys import Keys
from shared.messages import AlertEvent, encode_message
from shared.record_fields import Fields, RecordError, as_text

ALERT_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_fields_decoder = msgspec.json.Decoder(AlertEvent)


def alert_id(rule_id: str, cycle: str) -> str:
    """The id of a rule's alert on a cycle's window: a rule changes state once per window."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{rule_id}-{cycle}")[:200]


def snapshot_path(source: str, alert: str) -> str:
    """The API path of an alert's snapshot (`GET`, scope view or a media token)."""
    return f"/api/sources/{source}/alerts/{alert}/snapshot.jpg"


def to_fields(event: AlertEvent) -> dict[str, str]:
    """Flat stream fields of an alert: text as is, frame seqs comma-separated."""
    return {
        "source": event.source,
        "ts": f"{event.ts:.3f}",
        "alert_id": event.alert_id,
        "state": event.state,
        "rule_id": event.rule_id,
        "rule": event.rule,
        "condition": event.condition,
        "cycle": event.cycle,
        "history_id": event.history_id,
        "frame_seqs": ",".join(str(s) for s in event.frame_seqs),
        "text": event.text,
        "snapshot": event.snapshot,
        "worker": event.worker,
    }


def from_fields(fields: Fields) -> AlertEvent:
    """The alert of a stream entry; RecordError names what is wrong."""
    raw = {as_text(k): as_text(v) for k, v in fields.items()}
    try:
        seqs = [int(s) for s in raw.get("frame_seqs", "").split(",") if s]
        data = {**raw, "ts": float(raw.get("ts", "0")), "frame_seqs": seqs}
        return _fields_decoder.decode(msgspec.json.encode(data))
    except (ValueError, msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise RecordError(f"not an alert entry: {exc}") from None


async def record_alert(
    redis: aioredis.Redis,
    keys: Keys,
    event: AlertEvent,
    jpeg: bytes,
    *,
    maxlen: int,
    snapshot_ttl: float,
    rule_state: str = "",
) -> str:
    """Store the snapshot (and the rule's new state, JSON), append to the alerts stream and
    publish; returns the stream id. The writes are one transaction on a single Redis (on a
    cluster each is atomic on its own shard); the message follows them, so a viewer that
    hears of the alert can read it."""
    async with transaction(redis) as pipe:
        if rule_state:  # never an alert without its state, or a state without its alert
            pipe.hset(keys.rule_states(event.source), event.rule_id, rule_state)
        if jpeg:
            pipe.set(
                keys.alert_snapshot(event.source, event.alert_id), jpeg, px=int(snapshot_ttl * 1000)
            )
        pipe.xadd(keys.alerts, to_fields(event), maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
        results = await pipe.execute()
    await publish(redis, keys.events_channel(event.source), encode_message(event))
    entry_id = results[-1]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


async def source_alerts(
    redis: aioredis.Redis, keys: Keys, source: str, limit: int, scan: int = 2000
) -> list[tuple[str, AlertEvent]]:
    """The newest `limit` alerts of `source` (stream id, alert), newest first, among the
    newest `scan` entries of the stream (all sources share it)."""
    found: list[tuple[str, AlertEvent]] = []
    for entry_id, fields in await redis.xrevrange(keys.alerts, count=scan):
        try:
            event = from_fields(fields)
        except RecordError:
            continue
        if event.source == source:
            found.append((as_text(entry_id), event))
            if len(found) >= limit:
                break
    return found
