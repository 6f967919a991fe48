"""Sources: list, add, show, remove, instruction and history."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, post, put
from litestar.params import Parameter
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from api import routes
from api.auth import CONTROL, require_scope
from api.controllers import CHANGES, SECURED, errors
from api.history import HistoryService
from api.schemas import (
    HistoryOut,
    InstructionIn,
    InstructionOut,
    SourceAdded,
    SourceIn,
    SourceOut,
    SourcesOut,
)
from api.services import SourceService

Limit = Annotated[int, Parameter(ge=1, le=1000, description="Most entries to return")]
Before = Annotated[
    str | None, Parameter(description="Only entries older than this history id", required=False)
]
Query = Annotated[
    str | None,
    Parameter(
        description="Only entries whose text or question holds every word (case-insensitive "
        "for A-Z), at most 8 words, 200 characters",
        required=False,
        max_length=200,
    ),
]
Since = Annotated[
    str | None,
    Parameter(
        description="Only entries written at or after this time: epoch seconds or ISO 8601",
        required=False,
    ),
]
Until = Annotated[
    str | None,
    Parameter(
        description="Only entries written at or before this time: epoch seconds or ISO 8601",
        required=False,
    ),
]


class SourcesController(Controller):
    tags = ["sources"]
    guards = [require_scope]
    security = SECURED

    @get(routes.SOURCES, name="sources:list", operation_id="listSources", responses=errors(401))
    async def list_sources(self, service: SourceService) -> SourcesOut:
        """Every registered source with its URL (password removed) and instruction."""
        return await service.list()

    @post(
        routes.SOURCES,
        name="sources:add",
        operation_id="addSource",
        status_code=HTTP_202_ACCEPTED,
        opt={"scope": CONTROL},
        responses=errors(401, *CHANGES, 409, 413, 422),
    )
    async def add_source(self, data: SourceIn, service: SourceService) -> SourceAdded:
        """Start capturing a URL as a new source (a producer picks up the job)."""
        return SourceAdded(data.name, await service.add(data.name, data.url, data.options))

    @get(routes.SOURCE, name="sources:get", operation_id="getSource", responses=errors(401, 404))
    async def get_source(self, name: str, service: SourceService) -> SourceOut:
        """One source's URL and current instruction."""
        return await service.get(name)

    @delete(
        routes.SOURCE,
        name="sources:remove",
        operation_id="removeSource",
        status_code=HTTP_204_NO_CONTENT,
        opt={"scope": CONTROL},
        responses=errors(401, *CHANGES, 404),
    )
    async def remove_source(self, name: str, service: SourceService) -> None:
        """Remove a source however it is fed (supervised, standalone producer, ingest); its
        feeders are told to stop; its history stays."""
        await service.remove(name)

    @put(
        routes.INSTRUCTION,
        name="sources:instruction",
        operation_id="setInstruction",
        opt={"scope": CONTROL},
        responses=errors(401, *CHANGES, 404, 413, 422),
    )
    async def set_instruction(
        self, name: str, data: InstructionIn, service: SourceService
    ) -> InstructionOut:
        """Change what the commentary is about; the worker hears it at once."""
        return await service.set_instruction(name, data.instruction)

    @get(
        routes.HISTORY,
        name="sources:history",
        operation_id="getHistory",
        responses=errors(401, 404, 422),
    )
    async def history(
        self,
        name: str,
        history: HistoryService,
        limit: Limit = 20,
        before: Before = None,
        q: Query = None,
        since: Since = None,
        until: Until = None,
    ) -> HistoryOut:
        """Past commentaries, newest first (page back with `before`, or `next_before`);
        `q` searches their text, `since`/`until` bound their time."""
        return await history.history(name, limit, before, q, since, until)
