"""`GET /api/status`: producer, worker, speech and viewers of every source."""

from __future__ import annotations

import time

from msgspec.structs import replace

from api.schemas import SourceStatus, StatusOut
from api.services import Service
from shared import source_control as control
from shared.delivery import delivery_overview
from shared.models import required_models
from shared.producer_status import read_producer_status
from shared.record_fields import RecordError, as_text
from shared.status_records import ProducerStatus, SourceStats, WorkerBeat


class StatusService(Service):
    """The status of everything, for one request."""

    async def status(self) -> StatusOut:
        """Producer, worker, speech and viewers of every source."""
        workers = await self._workers()
        desired = {e.name: e for e in await control.list_desired(self.redis, self.settings)}
        names = sorted(set(await self.state.registry.names()) | set(desired))
        sources = [await self._source_status(n, workers, desired.get(n)) for n in names]
        sources = await self._model_notes(sources, workers)
        alerts = await delivery_overview(self.redis, self.keys)
        return StatusOut(sources, workers, self.state.viewers(), alerts=alerts)

    async def _model_notes(
        self, sources: list[SourceStatus], workers: dict[str, WorkerBeat]
    ) -> list[SourceStatus]:
        """Name each source's required model, and say so when no live worker serves it."""
        required = await required_models(self.redis, self.keys)
        now = time.time()
        served = {
            b.model for b in workers.values() if now - b.beat_ts <= self.settings.heartbeat_ttl
        }
        noted = []
        for source in sources:
            model = required.get(source.name)
            note = None if not model or model in served else f"no live worker serves {model}"
            noted.append(replace(source, model=model, model_note=note))
        return noted

    async def _workers(self) -> dict[str, WorkerBeat]:
        workers: dict[str, WorkerBeat] = {}
        head = self.keys.worker_status("")
        async for key in self.redis.scan_iter(match=self.keys.worker_pattern, count=100):
            name = as_text(key)
            raw = await self.redis.hgetall(name)  # type: ignore[misc]
            try:
                beat = WorkerBeat.from_fields(raw) if raw else None
            except RecordError:  # a hand-edited hash: that worker is not shown
                beat = None
            if beat is not None:
                workers[name[len(head) :]] = beat
        return workers

    async def _source_status(
        self, name: str, workers: dict[str, WorkerBeat], entry: control.DesiredSource | None
    ) -> SourceStatus:
        producer = await read_producer_status(self.redis, self.settings, name)
        if entry is not None and entry.error:  # failed for good: its status key may be gone
            failed = producer or ProducerStatus(state="failed")
            producer = replace(failed, state="failed", error=entry.error)
        lease = await self.redis.get(self.keys.lease(name))
        worker = None if lease is None else as_text(lease)
        raw_stats = await self.redis.hgetall(self.keys.worker_stats(name))  # type: ignore[misc]
        try:
            stats = SourceStats.from_fields(raw_stats)
        except RecordError:  # a hand-edited hash: shown as no statistics
            stats = SourceStats()
        worker_status = workers.get(worker) if worker else None
        engine_tts = None if worker_status is None else worker_status.tts
        tts = self.settings.enable_tts if engine_tts is None else engine_tts
        newest = await self.redis.xrevrange(self.keys.history(name), count=1)
        last = int(newest[0][0].split(b"-")[0]) / 1000 if newest else None
        return SourceStatus(
            name, producer, worker, worker_status, stats, tts, last, self.state.viewers(name)
        )
