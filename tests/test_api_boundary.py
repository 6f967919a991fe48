"""Safe by default, against real `lookout api` processes (issue 12, finding 3).

An API without keys: says so loudly, listens on loopback only unless ALLOW_OPEN=true, and a
page on another site can neither change anything (no simple cross-site POST: 415; a foreign
Origin: 403, on the ingest WebSocket too) nor read anything through DNS rebinding (Host: 400).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
import websockets

from shared.keys import Keys
from shared.sources import SourceRegistry
from tests.helpers import LookoutProcess, RedisServer, free_port, wait_for_port
from tests.test_api_support import ApiServer, add_frame, make_jpeg

PREFIX = f"bnd{os.getpid()}"
CORS = "https://ops.example"


@pytest.fixture(scope="module")
def server(redis_server: RedisServer) -> Iterator[ApiServer]:
    env = {
        "REDIS_URL": redis_server.url,
        "KEY_PREFIX": PREFIX,
        "CORS_ORIGINS": CORS,
        "ALLOWED_HOSTS": "lookout.example",
        "LOG_LEVEL": "INFO",
    }
    api = ApiServer(env, "api-open")
    yield api
    api.stop()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    await SourceRegistry(client, Keys(PREFIX), "describe").register("cam", "clip.mp4")
    await add_frame(client, Keys(PREFIX), "cam", 1, make_jpeg(1))
    yield client
    await client.aclose()


@pytest.fixture
async def http(server: ApiServer, redis: aioredis.Redis) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


def test_an_open_api_says_so_in_its_startup_log(server: ApiServer) -> None:
    assert "THE API IS OPEN: no API keys are configured" in server.proc.log()


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,
    ],
)
async def test_bodies_that_are_not_declared_json_are_a_415(
    http: httpx.AsyncClient, redis: aioredis.Redis, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    body = b'{"name": "evil", "url": "rtsp://camera.example/x"}'
    added = await http.post("/api/sources", content=body, headers=headers)
    instruction = await http.put(
        "/api/sources/cam/instruction", content=b'{"instruction": "x"}', headers=headers
    )
    asked = await http.post("/api/sources/cam/ask", content=b'{"question": "x"}', headers=headers)
    for response in (added, instruction, asked):
        assert response.status_code == 415, response.text
        assert response.json()["status"] == 415 and "application/json" in response.json()["error"]
    assert not await redis.hexists(Keys(PREFIX).producer_desired, "evil")  # type: ignore[misc]
    ok = await http.put("/api/sources/cam/instruction", json={"instruction": "count cars"})
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("https://evil.example", 403),
        ("null", 403),  # sandboxed frames and file:// pages
        ("http://127.0.0.1.evil.example", 403),
        (CORS, 200),
        (None, 200),  # curl, scripts: no Origin, no browser to abuse
    ],
)
async def test_state_changes_from_foreign_origins_are_a_403(
    http: httpx.AsyncClient, origin: str | None, status: int
) -> None:
    headers = {"Origin": origin} if origin else {}
    put = await http.put("/api/sources/cam/instruction", json={"instruction": "x"}, headers=headers)
    assert put.status_code == status, put.text
    if status == 403:
        assert "CORS_ORIGINS" in put.json()["error"]
        assert (await http.delete("/api/sources/cam", headers=headers)).status_code == 403


async def test_the_pages_own_origin_may_change_things(
    server: ApiServer, http: httpx.AsyncClient
) -> None:
    own = {"Origin": server.url}
    put = await http.put("/api/sources/cam/instruction", json={"instruction": "x"}, headers=own)
    assert put.status_code == 200


async def test_the_ingest_socket_refuses_foreign_origins(
    server: ApiServer, redis: aioredis.Redis
) -> None:
    url = server.url.replace("http", "ws") + "/api/sources/webcam/ingest"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(url, origin=websockets.Origin("https://evil.example")):
            pass
    assert refused.value.response.status_code == 403
    assert await redis.xlen(Keys(PREFIX).frames("webcam")) == 0
    async with websockets.connect(url, origin=websockets.Origin(server.url)) as ws:
        await ws.send(make_jpeg(1))
        assert msgspec.json.decode(await ws.recv()) == {"seq": 1}


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("rebound.attacker.example", 400),
        ("rebound.attacker.example:8199", 400),
        ("127.0.0.1.nip.io", 400),
        ("localhost", 200),
        ("127.0.0.1:1234", 200),
        ("[::1]:8199", 200),
        ("lookout.example", 200),  # ALLOWED_HOSTS
        ("LOOKOUT.EXAMPLE.:443", 200),
    ],
)
async def test_only_allowed_hosts_are_served(
    http: httpx.AsyncClient, host: str, status: int
) -> None:
    frame = await http.get("/api/sources/cam/frame", headers={"Host": host})
    assert frame.status_code == status
    # Health checks probe by address: /health answers any Host and tells nothing.
    assert (await http.get("/health", headers={"Host": host})).status_code == 200
    if status == 400:
        assert frame.json() == {
            "error": f"host {host.split(':')[0]!r} is not served here: add it to ALLOWED_HOSTS",
            "status": 400,
        }


def _api(env: dict[str, str], host: str) -> tuple[LookoutProcess, int]:
    port = free_port()
    return LookoutProcess(["api", "--host", host, "--port", str(port)], env, "api-bind"), port


def test_no_keys_refuses_a_network_address(redis_server: RedisServer) -> None:
    proc, _ = _api({"REDIS_URL": redis_server.url}, "0.0.0.0")
    assert proc.proc.wait(30) == 2
    log = proc.log()
    assert "refusing to listen on 0.0.0.0 with no API keys" in log
    assert all(name in log for name in ("API_KEYS", "API_KEYS_FILE", "ALLOW_OPEN", "SERVER_HOST"))


@pytest.mark.parametrize(
    ("extra", "banner"), [({"ALLOW_OPEN": "true"}, True), ({"API_KEYS": "k1:control"}, False)]
)
def test_allow_open_or_keys_let_it_listen_on_the_network(
    redis_server: RedisServer, extra: dict[str, str], banner: bool
) -> None:
    proc, port = _api({"REDIS_URL": redis_server.url, "LOG_LEVEL": "INFO", **extra}, "0.0.0.0")
    try:
        wait_for_port(port, timeout=30)
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        assert health.status_code == 200
    finally:
        proc.stop()
    assert ("THE API IS OPEN" in proc.log()) is banner
