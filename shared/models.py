"""Model routing, the client half: which model a source requires, and model switches of workers.

A source may require a model id (`Keys.source_models`): only workers whose heartbeat names that
model take its lease. A switch (`Keys.worker_model(worker)`) is asked by writing a
`ModelSwitch` with state `pending`; the worker polls the hash, drains, loads, and writes
`switching`, then `done` or `failed` (with the reason; it then serves its previous model).
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Literal

import msgspec
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.record_fields import Fields, RecordError, decode_hash
from shared.status_records import WorkerBeat

MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$")
SwitchState = Literal["pending", "switching", "done", "failed"]


class ModelIdError(ValueError):
    """A model id outside the safe charset or length."""


def validate_model_id(model: str) -> str:
    """`model` if it is a plausible model id: 1-200 of letters, digits and `._:/@+-`."""
    if not MODEL_ID_RE.fullmatch(model) or ".." in model:
        raise ModelIdError(
            f"invalid model id {model[:60]!r}: use 1-200 letters, digits or ._:/@+- "
            "(no '..'), starting with a letter or digit"
        )
    return model


def same_base_url(a: str, b: str) -> bool:
    """Base URLs compared without a trailing slash."""
    return a.strip().rstrip("/") == b.strip().rstrip("/")


def allowed_base_urls(current: str, extra: str) -> list[str]:
    """OPENAI_BASE_URL and OPENAI_ALLOWED_BASE_URLS: where a switch may point a worker."""
    urls = [current, *(u for u in extra.split(",") if u.strip())]
    return [u.strip().rstrip("/") for u in urls]


class ModelSwitch(msgspec.Struct, frozen=True, kw_only=True):
    """A model switch of one worker, as asked and as it went."""

    request_id: str
    model: str
    base_url: str = ""  # empty: the server it uses now
    state: SwitchState = "pending"
    error: str = ""
    previous: str = ""  # the model served before the switch
    updated_at: float = 0.0

    def to_fields(self) -> dict[str, str]:
        return {
            "request_id": self.request_id,
            "model": self.model,
            "base_url": self.base_url,
            "state": self.state,
            "error": self.error,
            "previous": self.previous,
            "updated_at": f"{self.updated_at:.3f}",
        }

    @classmethod
    def from_fields(cls, fields: Fields) -> ModelSwitch:
        text = decode_hash(fields)
        state = text.get("state", "pending")
        try:
            updated = float(text.get("updated_at", "0") or 0)
        except ValueError:
            updated = 0.0
        return cls(
            request_id=text.get("request_id", ""),
            model=text.get("model", ""),
            base_url=text.get("base_url", ""),
            state=state if state in ("pending", "switching", "done", "failed") else "failed",  # type: ignore[arg-type]
            error=text.get("error", ""),
            previous=text.get("previous", ""),
            updated_at=updated,
        )


async def require_model(redis: aioredis.Redis, keys: Keys, source: str, model: str | None) -> None:
    """Make `source` require `model` (None or empty: any worker may take it)."""
    if model:
        await redis.hset(keys.source_models, source, validate_model_id(model))  # type: ignore[misc]
    else:
        await redis.hdel(keys.source_models, source)  # type: ignore[misc]


async def required_models(redis: aioredis.Redis, keys: Keys) -> dict[str, str]:
    """Every source that requires a model, with that model."""
    return decode_hash(await redis.hgetall(keys.source_models))  # type: ignore[misc]


async def ask_switch(
    redis: aioredis.Redis, keys: Keys, worker: str, model: str, base_url: str = ""
) -> ModelSwitch:
    """Ask `worker` to serve `model` (at `base_url`, if given); the worker picks it up."""
    switch = ModelSwitch(
        request_id=secrets.token_hex(6),
        model=validate_model_id(model),
        base_url=base_url,
        updated_at=time.time(),
    )
    key = keys.worker_model(worker)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        pipe.hset(key, mapping=switch.to_fields())
        await pipe.execute()
    return switch


async def read_switch(redis: aioredis.Redis, keys: Keys, worker: str) -> ModelSwitch | None:
    """The last switch asked of `worker`, as it stands (None: never asked)."""
    raw = await redis.hgetall(keys.worker_model(worker))  # type: ignore[misc]
    return ModelSwitch.from_fields(raw) if raw else None


async def write_switch(redis: aioredis.Redis, keys: Keys, worker: str, switch: ModelSwitch) -> None:
    """The worker's side: record how the switch goes (only if it is still the one asked)."""
    current = await read_switch(redis, keys, worker)
    if current is not None and current.request_id != switch.request_id:
        return  # a newer request replaced it; the worker handles that one next
    stamped = msgspec.structs.replace(switch, updated_at=time.time())
    await redis.hset(keys.worker_model(worker), mapping=stamped.to_fields())  # type: ignore[misc]


async def serving_workers(
    redis: aioredis.Redis, keys: Keys, max_age: float
) -> dict[str, WorkerBeat]:
    """Workers whose heartbeat is younger than `max_age` seconds, by id."""
    workers: dict[str, WorkerBeat] = {}
    now = time.time()
    async for key in redis.scan_iter(match=keys.worker_pattern, count=100):
        try:
            beat = WorkerBeat.from_fields(await redis.hgetall(key))  # type: ignore[misc]
        except RecordError:  # a hand-edited hash is no worker
            continue
        if beat.worker and beat.beat_ts and now - beat.beat_ts <= max_age:
            workers[beat.worker] = beat
    return workers
