"""What the API does, apart from HTTP: read and change sources, history, status, jobs.

Controllers call these and translate nothing but HTTP. Start/stop of sources and one-off
questions go through the client halves of those contracts (`shared.source_control`,
`shared.asks`); this module maps their errors to HTTP ones.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from api.errors import (
    Conflict,
    FieldError,
    NotFound,
    TooManyRequests,
    UnknownSourceError,
)
from api.schemas import (
    HistoryItem,
    HistoryOut,
    InstructionOut,
    JobOut,
    SourceOut,
    SourcesOut,
    SourceStatus,
    StatusOut,
)
from api.state import AppState
from shared import asks
from shared import source_control as control
from shared.claims import INGEST_OWNER
from shared.keys import SourceNameError, validate_source_name
from shared.producer_status import read_producer_status
from shared.records import CommentaryRecord, RecordError, as_text, decode_hash
from shared.source_urls import SourceOptions, redact_url

STREAM_ID_RE = re.compile(r"^\d{1,20}-\d{1,20}$")


def redacted(url: str) -> str:
    """`url` without a password (camera URLs often carry credentials)."""
    try:
        return str(redact_url(url))
    except ValueError:
        return url.split("@", 1)[-1] if "@" in url else url


def history_item(entry_id: bytes | str, fields: dict[bytes, bytes]) -> HistoryItem | None:
    """One history stream entry as a response item; None if the entry is malformed."""
    try:
        record = CommentaryRecord.from_fields(fields)
    except RecordError:
        return None
    return HistoryItem(
        id=as_text(entry_id),
        cycle=record.cycle,
        status=record.status,
        kind=record.kind,
        text=record.text,
        instruction=record.instruction,
        worker=record.worker,
        started_at=record.started_at,
        duration_ms=record.duration_ms,
        latency_ms=record.latency_ms,
        tokens=record.tokens,
        question=record.question,
        job_id=record.job_id,
    )


class SourceService:
    """Sources, their instruction, history and status, for one request."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.redis = state.redis
        self.keys = state.keys
        self.settings = state.settings

    async def require(self, name: str) -> str:
        """`name` if it is a registered source, else 404."""
        try:
            validate_source_name(name)
        except SourceNameError:
            raise UnknownSourceError(name) from None
        if not await self.state.registry.exists(name):
            raise UnknownSourceError(name)
        return name

    async def _desired(self) -> dict[str, control.DesiredSource]:
        return {e.name: e for e in await control.list_desired(self.redis, self.settings)}

    async def list(self) -> SourcesOut:
        """Registered sources, and started ones that have no frame yet or failed."""
        desired = await self._desired()
        names = sorted(set(await self.state.registry.names()) | set(desired))
        out = [await self._source_out(n, desired.get(n)) for n in names]
        return SourcesOut([o for o in out if o is not None])

    async def get(self, name: str) -> SourceOut:
        try:
            validate_source_name(name)
        except SourceNameError:
            raise UnknownSourceError(name) from None
        entry = await control.get_desired(self.redis, self.settings, name)
        out = await self._source_out(name, entry)
        if out is None:
            raise UnknownSourceError(name)
        return out

    async def _source_out(self, name: str, entry: control.DesiredSource | None) -> SourceOut | None:
        st = await self.state.registry.state(name)
        if st is None and entry is None:
            return None
        state, error = await self._producer_state(name, entry)
        if st is None:
            assert entry is not None
            instruction = self.settings.default_instruction
            return SourceOut(
                name, redacted(entry.url), instruction, 0, entry.created_at, state, error
            )
        return SourceOut(
            st.name,
            redacted(st.url),
            st.instruction,
            st.instruction_rev,
            st.created_at,
            state,
            error,
        )

    async def _producer_state(
        self, name: str, entry: control.DesiredSource | None
    ) -> tuple[str | None, str | None]:
        """(state, error) of the producer of `name`: "failed" for good, or what it reports."""
        if entry is not None and entry.error:
            return "failed", entry.error
        status = await read_producer_status(self.redis, self.settings, name)
        if status is None:
            return None, None
        return status.get("state"), status.get("error") or None

    async def set_instruction(self, name: str, instruction: str) -> InstructionOut:
        await self.require(name)
        text = self._bounded_text("instruction", instruction)
        rev = await self.state.registry.set_instruction(name, text)
        return InstructionOut(name, text, rev)

    def _bounded_text(self, field: str, value: str) -> str:
        """`value` stripped; FieldError naming `field` when empty or over the length limit."""
        text = value.strip()
        limit = self.settings.instruction_max_chars
        if not text:
            raise FieldError(field, "must not be empty")
        if len(text) > limit:
            raise FieldError(field, f"{len(text)} characters, at most {limit} allowed")
        return text

    async def history(self, name: str, limit: int, before: str | None) -> HistoryOut:
        """Newest `limit` commentaries (newest first), optionally older than id `before`."""
        await self.require(name)
        if before is not None and not STREAM_ID_RE.fullmatch(before):
            raise FieldError("before", "expected a history id like 1700000000000-0")
        top = f"({before}" if before else "+"
        entries = await self.redis.xrevrange(self.keys.history(name), top, "-", count=limit)
        items = [history_item(i, f) for i, f in entries]
        return HistoryOut(name, [i for i in items if i is not None])

    async def add(self, name: str, url: str, options: dict[str, Any]) -> str:
        """Start capturing `url` as source `name`; returns the producer job id."""
        try:
            validate_source_name(name)
        except SourceNameError as exc:
            raise FieldError("name", str(exc)) from None
        try:
            parsed = msgspec.convert(options, SourceOptions)
        except (msgspec.ValidationError, ValueError) as exc:
            raise FieldError("options", str(exc)) from None
        holder = await self.state.claims.holder(name)
        if holder is not None and holder.startswith(INGEST_OWNER):
            raise Conflict(detail=f"source {name!r} is fed by a browser over the ingest WebSocket")
        try:
            job_id = await control.start_source(self.redis, self.settings, name, url, parsed)
        except control.SourceExists as exc:
            raise Conflict(detail=str(exc) or f"source {name!r} already exists") from None
        except SourceNameError as exc:
            raise FieldError("name", str(exc)) from None
        except ValueError as exc:
            raise FieldError("url", str(exc)) from None
        return str(job_id)

    async def remove(self, name: str) -> None:
        """Delete `name` however it is fed (supervised, standalone producer, ingest); 404 if
        it is unknown."""
        try:
            validate_source_name(name)
        except SourceNameError:
            raise UnknownSourceError(name) from None
        if not await control.remove_source(self.redis, self.settings, name):
            raise UnknownSourceError(name)

    async def ask(self, name: str, question: str) -> str:
        """Queue a one-off question about `name`; returns the job id (429 when full)."""
        await self.require(name)
        text = self._bounded_text("question", question)
        try:
            return str(await asks.enqueue_ask(self.redis, self.settings, name, text))
        except asks.AskQueueFull as exc:
            retry = max(1, int(round(exc.retry_after)))
            raise TooManyRequests(
                detail=f"too many questions queued; retry in {retry} s",
                headers={"Retry-After": str(retry)},
            ) from None

    async def job(self, job_id: str) -> JobOut:
        result = await asks.ask_status(self.redis, self.settings, job_id)
        if result is None:
            raise NotFound(detail=f"unknown job {job_id!r}")
        fields = msgspec.structs.asdict(result) if isinstance(result, msgspec.Struct) else result
        return msgspec.convert(fields, JobOut)

    async def status(self) -> StatusOut:
        """Producer, worker, speech and viewers of every source."""
        workers = await self._workers()
        desired = await self._desired()
        names = sorted(set(await self.state.registry.names()) | set(desired))
        sources = [await self._source_status(n, workers, desired.get(n)) for n in names]
        return StatusOut(sources, workers, self.state.viewers())

    async def _workers(self) -> dict[str, dict[str, str]]:
        workers: dict[str, dict[str, str]] = {}
        head = self.keys.worker_status("")
        async for key in self.redis.scan_iter(match=self.keys.worker_pattern, count=100):
            name = as_text(key)
            raw = await self.redis.hgetall(name)  # type: ignore[misc]
            if raw:
                workers[name[len(head) :]] = decode_hash(raw)
        return workers

    async def _source_status(
        self, name: str, workers: dict[str, dict[str, str]], entry: control.DesiredSource | None
    ) -> SourceStatus:
        status = await read_producer_status(self.redis, self.settings, name)
        producer: dict[str, object] | None = dict(status) if status is not None else None
        if entry is not None and entry.error:  # failed for good: its status key may be gone
            producer = {**(producer or {}), "state": "failed", "error": entry.error}
        lease = await self.redis.get(self.keys.lease(name))
        worker = None if lease is None else as_text(lease)
        stats = decode_hash(await self.redis.hgetall(self.keys.worker_stats(name)))  # type: ignore[misc]
        worker_status = workers.get(worker) if worker else None
        tts_flag = (worker_status or {}).get("tts", "")
        tts = tts_flag.lower() in ("1", "true", "on") if tts_flag else self.settings.enable_tts
        newest = await self.redis.xrevrange(self.keys.history(name), count=1)
        last = int(newest[0][0].split(b"-")[0]) / 1000 if newest else None
        return SourceStatus(
            name, producer, worker, worker_status, stats, tts, last, self.state.viewers(name)
        )
