"""The model routes of a real `lookout api` process: what they refuse, and what they write.

Heartbeats are written as workers write them (the bus contract), so no worker runs here; the
switch itself is tested with real workers in tests/test_openai_worker.py."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.models import read_switch, required_models
from shared.sources import SourceRegistry
from shared.status_records import WorkerBeat
from tests.test_api_support import ApiServer

CONTROL, VIEW = "models-control-key", "models-view-key"


@pytest.fixture
def api(test_env: dict[str, str]) -> Iterator[ApiServer]:
    env = {
        **test_env,
        "API_KEYS": f"{CONTROL}:control,{VIEW}:view",
        "OPENAI_BASE_URL": "http://vllm:8000/v1",
        "OPENAI_ALLOWED_BASE_URLS": "http://other-gpu:8000/v1",
    }
    server = ApiServer(env, "api-models")
    yield server
    server.stop()


def client(api: ApiServer, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


async def beat(redis: aioredis.Redis, keys: Keys, worker: str, engine: str, model: str) -> None:
    record = WorkerBeat(worker=worker, engine=engine, model=model, beat_ts=time.time())
    await redis.hset(keys.worker_status(worker), mapping=record.to_fields())  # type: ignore[misc]


async def test_source_model_requirements_are_checked_and_kept(
    api: ApiServer, redis_client: aioredis.Redis, keys: Keys
) -> None:
    await SourceRegistry(redis_client, keys, "Describe.").register("cam")
    await beat(redis_client, keys, "gpu-1", "openai", "org/vlm")
    async with client(api, CONTROL) as http:
        done = await http.put("/api/sources/cam/model", json={"model": "org/vlm"})
        assert done.status_code == 200 and done.json()["served_by"] == ["gpu-1"]
        assert await required_models(redis_client, keys) == {"cam": "org/vlm"}
        for body in (
            {"model": ""},
            {"model": "a" * 201},
            {"model": "../../etc/passwd"},
            {"model": "x", "extra": 1},
            {"model": 5},
        ):
            refused = await http.put("/api/sources/cam/model", json=body)
            assert refused.status_code == 422, (body, refused.text)
        assert (await http.put("/api/sources/nope/model", json={"model": "m"})).status_code == 404
        assert (await http.put("/api/sources/..%2Fx/model", json={"model": "m"})).status_code == 404
        cleared = await http.put("/api/sources/cam/model", json={"model": None})
        assert cleared.status_code == 200 and cleared.json()["model"] is None
    assert await required_models(redis_client, keys) == {}
    async with client(api, VIEW) as http:
        assert (await http.put("/api/sources/cam/model", json={"model": "m"})).status_code == 403
        listed = await http.get("/api/models")
        assert listed.status_code == 200
        assert [w["worker"] for w in listed.json()["workers"]] == ["gpu-1"]


async def test_worker_switches_are_refused_before_anything_is_asked(
    api: ApiServer, redis_client: aioredis.Redis, keys: Keys
) -> None:
    await beat(redis_client, keys, "gpu-1", "openai", "org/vlm")
    await beat(redis_client, keys, "cpu-1", "cpu", "cpu")
    async with client(api, CONTROL) as http:
        cases = {
            ("nobody", "org/b", None): 404,
            ("bad id with spaces", "org/b", None): 404,
            ("cpu-1", "org/b", None): 409,  # only openai workers switch
            ("gpu-1", "../x", None): 422,
            ("gpu-1", "org/b", "http://169.254.169.254/v1"): 422,  # not an allowed server
            ("gpu-1", "org/b", "http://vllm:8000/v1@evil.example"): 422,
        }
        for (worker, model, base_url), status in cases.items():
            body = {"model": model} | ({"base_url": base_url} if base_url else {})
            answer = await http.put(f"/api/workers/{worker}/model", json=body)
            assert answer.status_code == status, (worker, model, base_url, answer.text)
    async with client(api, VIEW) as http:
        view = await http.put("/api/workers/gpu-1/model", json={"model": "org/b"})
        assert view.status_code == 403
    assert await read_switch(redis_client, keys, "gpu-1") is None  # nothing was asked
