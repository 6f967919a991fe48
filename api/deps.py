"""Dependencies handlers declare by name: `lookout` (the process state), and one service per
thing served: `service` (sources), `history`, `jobs`, `statuses`."""

from __future__ import annotations

from litestar.datastructures import State
from litestar.di import Provide

from api.history import HistoryService
from api.jobs import JobService
from api.models import ModelService
from api.overview import StatusService
from api.rules import RuleService
from api.services import SourceService
from api.state import AppState


def provide_lookout(state: State) -> AppState:
    lookout: AppState = state.lookout
    return lookout


def provide_service(lookout: AppState) -> SourceService:
    return SourceService(lookout)


def provide_history(lookout: AppState) -> HistoryService:
    return HistoryService(lookout)


def provide_jobs(lookout: AppState) -> JobService:
    return JobService(lookout)


def provide_models(lookout: AppState) -> ModelService:
    return ModelService(lookout)


def provide_statuses(lookout: AppState) -> StatusService:
    return StatusService(lookout)


def provide_rules(lookout: AppState) -> RuleService:
    return RuleService(lookout)


DEPENDENCIES = {
    "lookout": Provide(provide_lookout, sync_to_thread=False),
    "service": Provide(provide_service, sync_to_thread=False),
    "history": Provide(provide_history, sync_to_thread=False),
    "jobs": Provide(provide_jobs, sync_to_thread=False),
    "statuses": Provide(provide_statuses, sync_to_thread=False),
    "rules": Provide(provide_rules, sync_to_thread=False),
    "models": Provide(provide_models, sync_to_thread=False),
}
