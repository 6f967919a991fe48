"""Redis frozen (SIGSTOP) or gone, against a real `lookout api` and a real redis-server:
/health answers within a second, other routes 503 with Retry-After, one log line per outage,
no traceback; everything answers again once Redis is back."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import httpx
import pytest
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.sources import SourceRegistry
from tests.helpers import RedisServer
from tests.test_api_support import ApiServer

HEALTH_BOUND_S = 1.5  # the route answers after 0.8 s; the rest is HTTP on a busy machine


@pytest.fixture
def stack() -> Iterator[tuple[RedisServer, ApiServer]]:
    server = RedisServer().start()
    api = ApiServer({"REDIS_URL": server.url, "KEY_PREFIX": "outage"}, "api-outage")
    try:
        yield server, api
    finally:
        api.stop()
        if server.proc is not None and server.proc.poll() is None:
            server.proc.send_signal(signal.SIGCONT)
        server.stop()


async def _timed(http: httpx.AsyncClient, path: str) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    resp = await http.get(path)
    return resp, time.monotonic() - start


async def test_frozen_redis_gives_fast_health_and_503_with_retry_after(
    stack: tuple[RedisServer, ApiServer],
) -> None:
    server, api = stack
    client = aioredis.Redis.from_url(server.url)
    await SourceRegistry(client, Keys("outage"), "describe").register("cam")
    await client.aclose()
    assert server.proc is not None
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        assert (await http.get("/api/sources/cam")).status_code == 200
        server.proc.send_signal(signal.SIGSTOP)
        health, took = await _timed(http, "/health")
        assert health.status_code == 503 and took < HEALTH_BOUND_S, took
        for _ in range(3):
            resp, took = await _timed(http, "/api/sources")
            assert resp.status_code == 503, resp.text
            assert resp.headers["retry-after"] == "2"
            assert resp.json()["error"].startswith("Redis unavailable")
            assert took < 10, took  # socket timeout (5 s), never a hang
        server.proc.send_signal(signal.SIGCONT)
        resp = await http.get("/api/sources/cam")
        assert resp.status_code == 200, resp.text
        assert (await http.get("/health")).status_code == 200
    log = api.proc.log()
    assert log.count("Redis unavailable") == 1, log
    assert "Traceback" not in log


async def test_redis_down_answers_503_at_once_and_recovers(
    stack: tuple[RedisServer, ApiServer],
) -> None:
    server, api = stack
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        assert (await http.get("/api/sources")).status_code == 200
        server.stop()
        for path in ("/api/sources", "/api/status", "/api/sources/cam/history"):
            resp, took = await _timed(http, path)
            assert resp.status_code == 503 and resp.headers["retry-after"] == "2", path
            assert took < 5, (path, took)
        health, took = await _timed(http, "/health")
        assert health.status_code == 503 and took < HEALTH_BOUND_S
        server.start()
        assert (await http.get("/api/sources")).status_code == 200
    log = api.proc.log()
    assert log.count("Redis unavailable") == 1, log
    assert "Traceback" not in log
