"""Models: who serves what and how fast, which model a source requires, switching a worker."""

from __future__ import annotations

from litestar import Controller, Response, get, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from api import routes
from api.auth import CONTROL, require_scope
from api.controllers import CHANGES, SECURED, errors
from api.model_schemas import (
    ModelsOut,
    SourceModelIn,
    SourceModelOut,
    WorkerModelIn,
    WorkerModelOut,
)
from api.models import ModelService


class ModelsController(Controller):
    tags = ["models"]
    guards = [require_scope]
    security = SECURED

    @get(routes.MODELS, name="models:list", operation_id="listModels", responses=errors(401))
    async def list_models(self, models: ModelService) -> ModelsOut:
        """Every live worker (engine, model, modalities, speech, measured tokens/s, what its
        server's /models lists) and every model served or required, with its sources."""
        return await models.models()

    @put(
        routes.SOURCE_MODEL,
        name="models:source",
        operation_id="setSourceModel",
        opt={"scope": CONTROL},
        responses=errors(401, *CHANGES, 404, 422),
    )
    async def set_source_model(
        self, name: str, data: SourceModelIn, models: ModelService
    ) -> SourceModelOut:
        """Make a source require a model (null: any): only workers serving it take the source."""
        return await models.set_source_model(name, data.model)

    @put(
        routes.WORKER_MODEL,
        name="models:worker",
        operation_id="switchWorkerModel",
        opt={"scope": CONTROL},
        responses={
            **errors(401, *CHANGES, 404, 409, 422),
            202: ResponseSpec(
                WorkerModelOut, description="Still switching after 30 s", generate_examples=False
            ),
        },
    )
    async def switch_worker_model(
        self, worker: str, data: WorkerModelIn, models: ModelService
    ) -> Response[WorkerModelOut]:
        """Switch an ENGINE=openai worker to another model (or server) at runtime: it cuts off
        its running cycle (recorded as interrupted), releases its sources, loads, and takes
        sources again. 200 when done; 202 when still switching after 30 s; 422 when the load
        failed (it still serves its previous model)."""
        out = await models.switch_worker(worker, data.model, data.base_url)
        done = out.state == "done"
        return Response(out, status_code=HTTP_200_OK if done else HTTP_202_ACCEPTED)
