"""The ingest WebSocket holds a claim like any producer (issue 12, finding 5).

Real processes: a `lookout api`, a supervisor and a standalone producer capturing an MP4. A
socket that tries to feed a name they capture gets a 409 and sends nothing into it; a name a
socket feeds cannot be started as a source, fed by a second socket or taken by a supervisor.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
import websockets

from shared.claims import Claims
from shared.keys import Keys
from shared.records import FrameRecord
from shared.sources import SourceRegistry
from tests.feeding_support import (  # noqa: F401 (fixtures)
    clip_fixture,
    env_fixture,
    ingest_url,
    processes_fixture,
    server_fixture,
)
from tests.helpers import LookoutProcess
from tests.test_api_support import ApiServer, make_jpeg, wait_until

PREFIX = f"ing{os.getpid()}"


async def refused_with_409(server: ApiServer, name: str) -> None:
    async with websockets.connect(ingest_url(server, name)) as ws:
        answer = msgspec.json.decode(await ws.recv())
        assert answer["status"] == 409 and "captured by" in answer["error"], answer
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(make_jpeg(1))  # sent anyway: must not become a frame
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
    assert ws.close_code == 4409


async def live_frames(redis: aioredis.Redis, name: str) -> bool:
    status = await redis.hget(Keys(PREFIX).producer_status(name), "state")  # type: ignore[misc]
    return status == b"live" and await redis.xlen(Keys(PREFIX).frames(name)) >= 2


async def assert_only_the_producers_frames(redis: aioredis.Redis, name: str, url: str) -> None:
    entries = await redis.xrange(Keys(PREFIX).frames(name))
    seqs = [FrameRecord.from_fields(fields).seq for _, fields in entries]
    assert seqs == sorted(set(seqs)), "frames interleaved or seqs repeated"
    state = await SourceRegistry(redis, Keys(PREFIX), "x").state(name)
    assert state is not None and state.url == url


@pytest.mark.slow
async def test_a_name_a_supervisor_captures_cannot_be_ingested(
    server: ApiServer,
    env: dict[str, str],
    redis_client: aioredis.Redis,
    clip: Path,
    processes: list[LookoutProcess],
) -> None:
    processes.append(LookoutProcess(["producer", "--supervise"], env, "ingest-sup"))
    async with httpx.AsyncClient(base_url=server.url) as http:
        added = await http.post("/api/sources", json={"name": "sup", "url": str(clip)})
    assert added.status_code == 202, added.text
    await wait_until(lambda: live_frames(redis_client, "sup"), timeout=30)
    await refused_with_409(server, "sup")
    await assert_only_the_producers_frames(redis_client, "sup", str(clip))


@pytest.mark.slow
async def test_a_name_a_standalone_producer_captures_cannot_be_ingested(
    server: ApiServer,
    env: dict[str, str],
    redis_client: aioredis.Redis,
    clip: Path,
    processes: list[LookoutProcess],
) -> None:
    args = ["producer", "--source", "solo", "--url", str(clip)]
    processes.append(LookoutProcess(args, env, "ingest-solo"))
    await wait_until(lambda: live_frames(redis_client, "solo"), timeout=30)
    await refused_with_409(server, "solo")
    await assert_only_the_producers_frames(redis_client, "solo", str(clip))


async def test_an_ingest_socket_holds_its_name_against_everyone_else(
    server: ApiServer, redis_client: aioredis.Redis, clip: Path
) -> None:
    keys = Keys(PREFIX)
    async with websockets.connect(ingest_url(server, "webcam")) as ws:
        await ws.send(make_jpeg(1))
        assert msgspec.json.decode(await ws.recv()) == {"seq": 1}
        holder = await redis_client.get(keys.producer_claim("webcam"))
        assert holder is not None and holder.startswith(b"ingest ")
        await refused_with_409(server, "webcam")  # a second socket
        async with httpx.AsyncClient(base_url=server.url) as http:
            added = await http.post("/api/sources", json={"name": "webcam", "url": str(clip)})
        assert added.status_code == 409 and "ingest WebSocket" in added.json()["error"]
        claims = Claims(redis_client, keys, 2000)
        assert not await claims.take("webcam", "supervisor-1 job-1")  # what a supervisor does
        await ws.send(make_jpeg(2))
        assert msgspec.json.decode(await ws.recv()) == {"seq": 2}
    await wait_until(lambda: _released(redis_client, keys), timeout=5)


async def _released(redis: aioredis.Redis, keys: Keys) -> bool:
    return await redis.get(keys.producer_claim("webcam")) is None
