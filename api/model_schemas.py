"""Request and response bodies of the model routes (GET /api/models, PUT .../model)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from api.schemas import Request

ModelId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=200,
        examples=["openbmb/MiniCPM-o-4_5"],
        description="A model id as the serving workers advertise it",
    ),
]


class SourceModelIn(Request):
    model: ModelId | None = None  # null: any worker may take the source


class SourceModelOut(msgspec.Struct):
    source: str
    model: str | None
    served_by: list[str]  # live workers serving that model (empty: nobody does now)


class WorkerModelIn(Request):
    model: ModelId
    base_url: (
        Annotated[
            str,
            Meta(
                max_length=2048,
                description="ENGINE=openai: another server, one of OPENAI_BASE_URL and "
                "OPENAI_ALLOWED_BASE_URLS (default: the one it uses)",
            ),
        ]
        | None
    ) = None


class WorkerModelOut(msgspec.Struct):
    worker: str
    request_id: str
    state: str  # pending | switching | done | failed
    model: str
    previous: str
    error: str


class ServingWorker(msgspec.Struct):
    worker: str
    engine: str
    model: str
    modalities: list[str]
    speech: bool
    tokens_per_s: float
    server: str
    server_models: list[str]
    sources: list[str]
    switch: WorkerModelOut | None = None


class ModelOut(msgspec.Struct):
    model: str
    workers: list[str]  # live workers serving it
    sources: list[str]  # sources requiring it
    server_lists: bool  # some openai server lists it on /models


class ModelsOut(msgspec.Struct):
    models: list[ModelOut]
    workers: list[ServingWorker]
    required: dict[str, str]  # source -> model it requires
