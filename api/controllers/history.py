"""Snapshots of the history: the newest frame of the window each commentary described."""

from __future__ import annotations

from litestar import Controller, Response, get

from api import routes
from api.auth import require_scope
from api.controllers import MEDIA_SECURED, errors
from api.history import HistoryService
from api.tokens import MEDIA

# A snapshot never changes under its id; it only disappears, so it may be cached a while.
SNAPSHOT_CACHE = {"Cache-Control": "private, max-age=3600"}


class HistoryController(Controller):
    tags = ["sources"]
    guards = [require_scope]
    security = MEDIA_SECURED

    @get(
        routes.SNAPSHOT,
        name="history:snapshot",
        operation_id="getSnapshot",
        opt={"token": MEDIA},
        media_type="image/jpeg",
        responses=errors(401, 403, 404, 422),
    )
    async def snapshot(
        self, name: str, history_id: str, history: HistoryService
    ) -> Response[bytes]:
        """The newest JPEG of the window history entry `history_id` described (at most
        SNAPSHOT_MAX_BYTES); 404 once the entry is trimmed from the history."""
        jpeg = await history.snapshot(name, history_id)
        return Response(jpeg, media_type="image/jpeg", headers=SNAPSHOT_CACHE)
