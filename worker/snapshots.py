"""Snapshots: the newest JPEG of each commented window, kept exactly as long as its history entry.

A snapshot lives in `Keys.snapshots(source)` under the same stream id as its history entry.
One Lua script appends both: XADD to the history (MAXLEN ~ HISTORY_MAXLEN), XADD the snapshot
under the id the history just gave, then XTRIM the snapshots to the history's oldest id
(MINID). So whatever trimming removes from the history takes its snapshot with it in the
same step, and the API finds a snapshot only while its entry is there. A snapshot is at most
SNAPSHOT_MAX_BYTES: the frame's own JPEG when it fits, else the frame re-encoded smaller.
"""

from __future__ import annotations

import cv2
import redis.asyncio as aioredis

from shared.jpeg import JpegError, encode_jpeg
from shared.keys import Keys
from shared.records import CommentaryRecord
from worker.engines.base import WindowFrame

# (scale, JPEG quality) tried in turn until the snapshot fits its budget.
SHRINK_STEPS = ((1.0, 70), (0.75, 60), (0.5, 60), (0.35, 50), (0.25, 40), (0.15, 40))

# KEYS: history, snapshots. ARGV: maxlen, jpeg ("" for none), then the record's field pairs.
# The snapshot's XADD is a pcall: an id below the snapshots' newest (a history stream deleted
# by hand and started again) loses that snapshot, never the history entry.
_APPEND = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 3))
if ARGV[2] ~= '' then
  redis.pcall('XADD', KEYS[2], id, 'jpeg', ARGV[2])
end
local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #oldest > 0 then
  redis.call('XTRIM', KEYS[2], 'MINID', oldest[1][1])
end
return id
"""


def fit_snapshot(frame: WindowFrame, budget: int) -> bytes:
    """`frame` as a JPEG of at most `budget` bytes (shrunk when its own is bigger); b"" when
    the budget is 0 or nothing fits."""
    if budget <= 0:
        return b""
    if frame.jpeg and len(frame.jpeg) <= budget:
        return frame.jpeg
    height, width = frame.image.shape[:2]
    for scale, quality in SHRINK_STEPS:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = frame.image
        if scale != 1.0:
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)  # type: ignore[assignment]
        try:
            jpeg = encode_jpeg(image, quality)
        except JpegError:
            return b""
        if len(jpeg) <= budget:
            return jpeg
    return b""


class HistoryWriter:
    """Appends commentaries to a source's history, each with its snapshot."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, maxlen: int) -> None:
        self._redis = redis
        self._keys = keys
        self._maxlen = maxlen
        self._append = redis.register_script(_APPEND)

    async def append(self, source: str, record: CommentaryRecord, snapshot: bytes) -> str:
        """XADD `record` (and `snapshot` under the same id); returns the history id."""
        pairs: list[str | bytes] = []
        for name, value in record.to_fields().items():
            pairs += [name, value]
        keys = [self._keys.history(source), self._keys.snapshots(source)]
        raw_id = await self._append(keys=keys, args=[self._maxlen, snapshot, *pairs])
        return raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)

    async def newest(self, source: str) -> tuple[str, str]:
        """The newest history entry of `source`: its id and text ("", "" when there is none)."""
        entries = await self._redis.xrevrange(self._keys.history(source), count=1)
        if not entries:
            return "", ""
        raw_id, fields = entries[0]
        text = fields.get(b"text", b"")
        return raw_id.decode(), text.decode(errors="replace")
