"""DELETE /api/sources/NAME removes a source however it is fed: real `lookout api`, a
supervisor, a standalone producer and an ingest WebSocket. Each feeder is told to stop, the
source disappears from the API, and its keys are gone (history kept, as documented)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
import websockets

from shared.keys import Keys
from tests.feeding_support import (  # noqa: F401 (fixtures)
    clip_fixture,
    env_fixture,
    ingest_url,
    processes_fixture,
    server_fixture,
)
from tests.helpers import LookoutProcess
from tests.test_api_support import ApiServer, add_history, make_jpeg, wait_until

PREFIX = f"del{os.getpid()}"
KEYS = Keys(PREFIX)


async def _frames(redis: aioredis.Redis, name: str) -> bool:
    return int(await redis.xlen(KEYS.frames(name))) >= 2


async def _delete_and_check_gone(server: ApiServer, redis: aioredis.Redis, name: str) -> None:
    history_id = await add_history(redis, KEYS, name, "kept after delete")
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        assert (await http.get(f"/api/sources/{name}")).status_code == 200
        deleted = await http.delete(f"/api/sources/{name}")
        assert deleted.status_code == 204, deleted.text
        assert (await http.get(f"/api/sources/{name}")).status_code == 404
        listed = (await http.get("/api/sources")).json()["sources"]
        assert name not in [s["name"] for s in listed]
        assert (await http.delete(f"/api/sources/{name}")).status_code == 404
    assert not await redis.exists(KEYS.source_state(name), KEYS.lease(name))
    assert not await redis.sismember(KEYS.sources, name)  # type: ignore[misc]
    assert await redis.hget(KEYS.producer_desired, name) is None  # type: ignore[misc]
    assert 0 < await redis.ttl(KEYS.removed(name)) <= 60
    entries = await redis.xrange(KEYS.history(name))
    assert [i.decode() for i, _ in entries] == [history_id]


async def _stays_gone(server: ApiServer, redis: aioredis.Redis, name: str) -> None:
    # Longer than a feeder's re-registration period: nothing brings the source back, and the
    # frames a feeder sent before it heard of the DELETE are gone with it.
    for _ in range(15):
        assert not await redis.sismember(KEYS.sources, name)  # type: ignore[misc]
        await asyncio.sleep(0.2)
    assert not await redis.exists(KEYS.frames(name), KEYS.source_state(name))


@pytest.mark.slow
async def test_delete_stops_a_standalone_producer(
    server: ApiServer,
    env: dict[str, str],
    redis_client: aioredis.Redis,
    clip: Path,
    processes: list[LookoutProcess],
) -> None:
    producer = LookoutProcess(["producer", "--source", "solo", "--url", str(clip)], env, "solo")
    processes.append(producer)
    await wait_until(lambda: _frames(redis_client, "solo"), timeout=30)
    await _delete_and_check_gone(server, redis_client, "solo")
    await wait_until(lambda: _exited(producer), timeout=10)
    assert producer.proc.returncode == 0, producer.log()
    assert "removed through the API" in producer.log()
    await _stays_gone(server, redis_client, "solo")


async def _exited(proc: LookoutProcess) -> bool:
    return not proc.alive()


@pytest.mark.slow
async def test_delete_stops_a_supervised_source(
    server: ApiServer,
    env: dict[str, str],
    redis_client: aioredis.Redis,
    clip: Path,
    processes: list[LookoutProcess],
) -> None:
    processes.append(LookoutProcess(["producer", "--supervise"], env, "del-sup"))
    async with httpx.AsyncClient(base_url=server.url) as http:
        added = await http.post("/api/sources", json={"name": "sup", "url": str(clip)})
    assert added.status_code == 202, added.text
    await wait_until(lambda: _frames(redis_client, "sup"), timeout=30)
    await _delete_and_check_gone(server, redis_client, "sup")

    async def capture_stopped() -> bool:
        state = await redis_client.hget(KEYS.producer_status("sup"), "state")  # type: ignore[misc]
        return state in (None, b"stopped")

    await wait_until(capture_stopped, timeout=10)
    await _stays_gone(server, redis_client, "sup")
    async with httpx.AsyncClient(base_url=server.url) as http:  # the name can be used again
        again = await http.post("/api/sources", json={"name": "sup", "url": str(clip)})
    assert again.status_code == 202, again.text
    await wait_until(lambda: _registered(redis_client, "sup"), timeout=30)


async def _registered(redis: aioredis.Redis, name: str) -> bool:
    return bool(await redis.sismember(KEYS.sources, name))  # type: ignore[misc]


async def test_delete_closes_an_ingest_socket(
    server: ApiServer, redis_client: aioredis.Redis
) -> None:
    async with websockets.connect(ingest_url(server, "webcam")) as ws:
        await ws.send(make_jpeg(1))
        assert msgspec.json.decode(await ws.recv()) == {"seq": 1}
        await _delete_and_check_gone(server, redis_client, "webcam")
        answer: dict[str, object] = {}
        for n in range(2, 40):  # each frame is acknowledged until the socket hears of it
            await ws.send(make_jpeg(n))
            answer = msgspec.json.decode(await ws.recv())
            if "error" in answer:
                break
            await asyncio.sleep(0.1)
        assert answer.get("status") == 410 and "removed" in str(answer["error"]), answer
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
    assert ws.close_code == 4410
    await _stays_gone(server, redis_client, "webcam")
