"""Reading a producer's status hash (`Keys.producer_status`), which producers/status.py writes.

Fields: state (connecting | live | reconnecting | stopped), kind, url, fps, last_frame_ts,
frames, attempt, error, pid, host, updated_at. The hash has a TTL, so a dead producer's
status disappears.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from shared.keys import Keys
from shared.record_fields import RecordError
from shared.settings import Settings
from shared.status_records import ProducerStatus


async def read_producer_status(
    redis: aioredis.Redis, settings: Settings, source: str
) -> ProducerStatus | None:
    """The status hash of `source`'s producer, or None when no live producer wrote one."""
    raw = await redis.hgetall(Keys(settings.key_prefix).producer_status(source))  # type: ignore[misc]
    if not raw:
        return None
    try:
        return ProducerStatus.from_fields(raw)
    except RecordError:
        return None  # a hand-edited or foreign hash: as if no producer wrote one
