"""What the API does with models: who serves what, source requirements, worker switches.

The worker side reads the same keys (`shared.models`): the API writes a requirement or a
switch request, workers act on them. A switch is answered once the worker has done it, or
failed and rolled back, or after SWITCH_WAIT_S with its state so far (202).
"""

from __future__ import annotations

import asyncio
import re
import time

from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_404_NOT_FOUND

from api.errors import Conflict, FieldError
from api.model_schemas import (
    ModelOut,
    ModelsOut,
    ServingWorker,
    SourceModelOut,
    WorkerModelOut,
)
from api.services import Service
from shared.models import (
    ModelIdError,
    ModelSwitch,
    allowed_base_urls,
    ask_switch,
    read_switch,
    require_model,
    required_models,
    serving_workers,
    validate_model_id,
)
from shared.status_records import WorkerBeat

WORKER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
SWITCH_WAIT_S = 30.0
SWITCH_POLL_S = 0.1


class UnknownWorkerError(HTTPException):
    status_code = HTTP_404_NOT_FOUND

    def __init__(self, worker: str) -> None:
        super().__init__(detail=f"no live worker {worker[:130]!r}")


def switch_out(worker: str, switch: ModelSwitch) -> WorkerModelOut:
    return WorkerModelOut(
        worker, switch.request_id, switch.state, switch.model, switch.previous, switch.error
    )


class ModelService(Service):
    """Models served, required and switched, for one request."""

    async def _live(self) -> dict[str, WorkerBeat]:
        return await serving_workers(self.redis, self.keys, self.settings.heartbeat_ttl)

    async def models(self) -> ModelsOut:
        """Every live worker with what it serves and how fast; every model served or required."""
        live = await self._live()
        required = await required_models(self.redis, self.keys)
        workers = [await self._serving(w, beat) for w, beat in sorted(live.items())]
        listed = {m for beat in live.values() for m in beat.server_models}
        names = sorted({b.model for b in live.values() if b.model} | set(required.values()))
        models = [
            ModelOut(
                model=name,
                workers=sorted(w for w, b in live.items() if b.model == name),
                sources=sorted(s for s, m in required.items() if m == name),
                server_lists=name in listed,
            )
            for name in names
        ]
        return ModelsOut(models, workers, required)

    async def _serving(self, worker: str, beat: WorkerBeat) -> ServingWorker:
        switch = await read_switch(self.redis, self.keys, worker)
        return ServingWorker(
            worker=worker,
            engine=beat.engine,
            model=beat.model,
            modalities=beat.modalities,
            speech=bool(beat.tts),
            tokens_per_s=beat.tokens_per_s,
            server=beat.server,
            server_models=beat.server_models,
            sources=beat.sources,
            switch=None if switch is None else switch_out(worker, switch),
        )

    async def set_source_model(self, name: str, model: str | None) -> SourceModelOut:
        """Make source `name` require `model` (None: any worker)."""
        await self.require(name)
        try:
            await require_model(self.redis, self.keys, name, model)
        except ModelIdError as exc:
            raise FieldError("model", str(exc)) from None
        live = await self._live()
        served_by = sorted(w for w, b in live.items() if model and b.model == model)
        return SourceModelOut(name, model or None, served_by)

    async def switch_worker(self, worker: str, model: str, base_url: str | None) -> WorkerModelOut:
        """Ask `worker` to serve `model`; answer once it did, failed, or SWITCH_WAIT_S passed."""
        if not WORKER_ID_RE.fullmatch(worker):
            raise UnknownWorkerError(worker)
        beat = (await self._live()).get(worker)
        if beat is None:
            raise UnknownWorkerError(worker)
        try:
            validate_model_id(model)
        except ModelIdError as exc:
            raise FieldError("model", str(exc)) from None
        if beat.engine != "openai":
            raise Conflict(
                f"worker {worker!r} runs ENGINE={beat.engine}; only ENGINE=openai workers "
                "switch models at runtime"
            )
        s = self.settings
        if base_url and base_url.strip().rstrip("/") not in allowed_base_urls(
            s.openai_base_url, s.openai_allowed_base_urls
        ):
            raise FieldError("base_url", "not one of OPENAI_BASE_URL and OPENAI_ALLOWED_BASE_URLS")
        current = await read_switch(self.redis, self.keys, worker)
        if current is not None and current.state in ("pending", "switching"):
            if time.time() - current.updated_at < SWITCH_WAIT_S:
                raise Conflict(f"worker {worker!r} is already switching to {current.model!r}")
        asked = await ask_switch(self.redis, self.keys, worker, model, base_url or "")
        return await self._outcome(worker, asked)

    async def _outcome(self, worker: str, asked: ModelSwitch) -> WorkerModelOut:
        deadline = time.monotonic() + SWITCH_WAIT_S
        switch = asked
        while time.monotonic() < deadline:
            seen = await read_switch(self.redis, self.keys, worker)
            if seen is None or seen.request_id != asked.request_id:
                raise Conflict(f"another switch of worker {worker!r} replaced this one")
            switch = seen
            if switch.state in ("done", "failed"):
                break
            await asyncio.sleep(SWITCH_POLL_S)
        if switch.state == "failed":
            raise FieldError(
                "model",
                f"worker {worker!r} could not switch to {switch.model!r} and still serves "
                f"{switch.previous!r}: {switch.error}",
            )
        return switch_out(worker, switch)
