"""Reads the frames streams of the sources a worker holds and feeds their sample buffers.

One blocking XREAD covers every held source, so a source without new frames costs no
polling. A source just taken over is primed from the tail of its stream (one window span),
so its first window does not wait for a full span of new frames.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from shared.backoff import Backoff
from shared.bus import REDIS_ERRORS
from shared.cluster import is_cluster
from shared.keys import Keys
from shared.record_fields import RecordError
from shared.records import FrameRecord
from shared.settings import Settings
from worker.scheduler import Scheduler
from worker.windows import FPS_TOLERANCE, SampleBuffer

log = logging.getLogger(__name__)

READ_BLOCK_MS = 500  # also how soon a newly leased source joins the XREAD
READ_COUNT = 100
CLUSTER_POLL_S = 0.05  # on a cluster streams are polled (no XREAD BLOCK across slots)


def _id(entry_id: bytes | str) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def parse_entries(
    source: str, entries: Sequence[tuple[bytes, dict[bytes, bytes]]]
) -> list[tuple[str, FrameRecord]]:
    """(stream id, record) pairs; a malformed entry is logged and left out."""
    records: list[tuple[str, FrameRecord]] = []
    for entry_id, fields in entries:
        sid = _id(entry_id)
        try:
            records.append((sid, FrameRecord.from_fields(fields)))
        except RecordError as exc:
            log.warning("%s: skipped frame entry %s: %s", source, sid, exc)
    return records


async def recent_records(
    redis: aioredis.Redis,
    keys: Keys,
    settings: Settings,
    source: str,
    max_age: float | None = None,
) -> tuple[str, list[tuple[str, FrameRecord]]]:
    """The newest entry id ("0-0" if none) and the frames of the last window span of
    `source`, oldest first, none older than `max_age` seconds."""
    span = (settings.frames_per_inference - 1) * settings.frame_stride + 1
    count = min(settings.frames_maxlen, int(span / settings.capture_fps * settings.display_fps) + 4)
    entries = await redis.xrevrange(keys.frames(source), count=count)
    records = parse_entries(source, list(reversed(entries)))
    if max_age is not None:
        oldest = time.time() - max_age
        records = [(sid, r) for sid, r in records if r.ts >= oldest]
    return (_id(entries[0][0]) if entries else "0-0"), records


def newest_first_sampling(records: list[tuple[str, FrameRecord]], fps: float) -> list[FrameRecord]:
    """Frames at most `fps` apart, chosen back from the newest (which is always kept)."""
    picked: list[FrameRecord] = []
    for _, record in reversed(records):
        if not picked or picked[-1].ts - record.ts >= 1.0 / fps * FPS_TOLERANCE:
            picked.append(record)
    return picked[::-1]


async def current_buffer(
    redis: aioredis.Redis, keys: Keys, settings: Settings, source: str
) -> SampleBuffer:
    """A sample buffer filled from the stream tail (for a one-off question on any source)."""
    buffer = SampleBuffer(source, settings)
    _, records = await recent_records(redis, keys, settings, source)
    for record in newest_first_sampling(records, settings.capture_fps):
        buffer.offer(record)
    return buffer


class StreamFrames:
    """Frames from the sources' Redis streams, fed into each held slot's sample buffer."""

    def __init__(
        self, redis: aioredis.Redis, keys: Keys, settings: Settings, scheduler: Scheduler
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._scheduler = scheduler
        self._positions: dict[str, str] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Read until `stop`; a Redis outage is waited out, then reading resumes."""
        backoff = Backoff(0.2, 5.0)
        while not stop.is_set():
            try:
                await self._read_once()
                backoff.reset()
            except REDIS_ERRORS as exc:
                delay = backoff.next()
                log.warning("reading frames failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def _read_once(self) -> None:
        held = list(self._scheduler.slots)
        for gone in set(self._positions) - set(held):
            del self._positions[gone]
        for source in held:
            if source not in self._positions:
                await self._prime(source)
        if not held:
            await asyncio.sleep(READ_BLOCK_MS / 1000)
            return
        streams: dict[bytes | str | memoryview, int | bytes | str | memoryview] = {
            self._keys.frames(s): self._positions[s] for s in held
        }
        if is_cluster(self._redis):
            reply = await self._read_each(streams)
        else:
            reply = await self._redis.xread(streams, count=READ_COUNT, block=READ_BLOCK_MS)
        for stream, entries in reply or []:
            name = stream.decode() if isinstance(stream, bytes) else str(stream)
            source = self._keys.source_from_channel(name)
            if entries:
                self._feed(source, _id(entries[-1][0]), parse_entries(source, entries))

    async def _read_each(self, streams: dict[Any, Any]) -> list[Any]:
        """On a cluster one XREAD covers one slot: read each source's stream on its own
        (together, not blocking), and wait a little when none had anything new. A shard that
        is down holds back only its own sources (raised when every read failed)."""
        replies = await asyncio.gather(
            *(self._redis.xread({k: v}, count=READ_COUNT) for k, v in streams.items()),
            return_exceptions=True,
        )
        failed = [r for r in replies if isinstance(r, BaseException)]
        for error in failed:
            if not isinstance(error, REDIS_ERRORS):
                raise error
        if failed and len(failed) == len(replies):
            raise failed[0]
        if failed:
            log.warning("reading frames failed on %d shard(s): %s", len(failed), failed[0])
        found = [entry for reply in replies if isinstance(reply, list) for entry in reply]
        if failed:
            await asyncio.sleep(READ_BLOCK_MS / 1000)  # retry the shard that is down gently
        elif not found:
            await asyncio.sleep(CLUSTER_POLL_S)
        return found

    async def _prime(self, source: str) -> None:
        # Frames older than STALL_TIMEOUT are history, not a scene to comment on now.
        last_id, records = await recent_records(
            self._redis, self._keys, self._settings, source, self._settings.stall_timeout
        )
        # Sampled back from the newest frame, so the first window ends at the newest one.
        self._positions[source] = last_id
        slot = self._scheduler.slots.get(source)
        if slot is not None:
            for record in newest_first_sampling(records, self._settings.capture_fps):
                slot.buffer.offer(record)
            self._scheduler.wake.set()

    def _feed(self, source: str, last_id: str, records: list[tuple[str, FrameRecord]]) -> None:
        # The position moves past malformed entries too, so they are not read again.
        self._positions[source] = last_id
        slot = self._scheduler.slots.get(source)
        if slot is not None and any([slot.buffer.offer(record) for _, record in records]):
            self._scheduler.wake.set()
