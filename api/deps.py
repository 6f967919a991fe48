"""Dependencies handlers declare by name: `lookout` (the process state) and `service`."""

from __future__ import annotations

from litestar.datastructures import State
from litestar.di import Provide

from api.services import SourceService
from api.state import AppState


def provide_lookout(state: State) -> AppState:
    lookout: AppState = state.lookout
    return lookout


def provide_service(lookout: AppState) -> SourceService:
    return SourceService(lookout)


DEPENDENCIES = {
    "lookout": Provide(provide_lookout, sync_to_thread=False),
    "service": Provide(provide_service, sync_to_thread=False),
}
