"""What the API does with sources, apart from HTTP: list, read, add, remove, instruct.

Controllers call services and translate nothing but HTTP; one service per thing served:
sources (here), history (`api.history`), jobs (`api.jobs`), status (`api.overview`). Start
and stop go through the client half of the contract (`shared.source_control`); this module
maps its errors to HTTP ones.
"""

from __future__ import annotations

from typing import Any

import msgspec

from api.errors import (
    Conflict,
    FieldError,
    UnknownSourceError,
)
from api.schemas import (
    InstructionOut,
    SourceOut,
    SourcesOut,
)
from api.state import AppState
from shared import source_control as control
from shared.claims import INGEST_OWNER
from shared.keys import SourceNameError, validate_source_name
from shared.models import require_model
from shared.producer_status import read_producer_status
from shared.source_urls import SourceOptions, redact_url


def redacted(url: str) -> str:
    """`url` without a password (camera URLs often carry credentials)."""
    try:
        return str(redact_url(url))
    except ValueError:
        return url.split("@", 1)[-1] if "@" in url else url


def bounded_text(field: str, value: str, limit: int) -> str:
    """`value` stripped; FieldError naming `field` when empty or over the length limit."""
    text = value.strip()
    if not text:
        raise FieldError(field, "must not be empty")
    if len(text) > limit:
        raise FieldError(field, f"{len(text)} characters, at most {limit} allowed")
    return text


class Service:
    """What every service of one request holds, and the 404 for unknown sources."""

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


class SourceService(Service):
    """Sources and their instruction, for one request."""

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
        return status.state, status.error or None

    async def set_instruction(self, name: str, instruction: str) -> InstructionOut:
        await self.require(name)
        text = bounded_text("instruction", instruction, self.settings.instruction_max_chars)
        rev = await self.state.registry.set_instruction(name, text)
        return InstructionOut(name, text, rev)

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
        await require_model(self.redis, self.keys, name, None)  # its model requirement goes too
