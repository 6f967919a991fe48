"""`GET /api/sources/{name}/frames/{seq}`: a past frame by sequence number, while kept.

A real API process with keys; frames written to Redis as a producer writes them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.records import FrameRecord
from shared.sources import SourceRegistry
from tests.test_api_support import ApiServer, make_jpeg

KEY = "frames-view-key"


@pytest.fixture
async def http(test_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    api = ApiServer({**test_env, "API_KEYS": f"{KEY}:view"}, "api-frames")
    try:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=api.url, headers=headers) as client:
            yield client
    finally:
        api.stop()


async def add(redis: aioredis.Redis, keys: Keys, seq: int, ts: float, seed: int) -> bytes:
    jpeg = make_jpeg(seed)
    record = FrameRecord(seq=seq, ts=ts, width=320, height=180, jpeg=jpeg)
    await redis.xadd(keys.frames("cam"), record.to_fields())  # type: ignore[arg-type]
    return jpeg


async def test_a_kept_frame_is_served_and_a_trimmed_one_says_so(
    http: httpx.AsyncClient, redis_client: aioredis.Redis, keys: Keys
) -> None:
    await SourceRegistry(redis_client, keys, "i").register("cam", "media/cam.mp4")
    now = time.time()
    first = await add(redis_client, keys, 7, now - 0.2, 1)
    # A restarted producer counts from 1 again: seq 7 twice, told apart by capture time.
    await add(redis_client, keys, 8, now - 0.1, 2)
    again = await add(redis_client, keys, 7, now, 3)
    resp = await http.get("/api/sources/cam/frames/7", params={"ts": now - 0.2})
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/jpeg"
    assert resp.content == first
    resp = await http.get("/api/sources/cam/frames/7", params={"ts": now})
    assert resp.content == again
    assert (await http.get("/api/sources/cam/frames/8")).status_code == 200  # no ts: walks
    for params in ({"ts": now - 3600}, {}):  # long trimmed, or never there
        resp = await http.get("/api/sources/cam/frames/3", params=params)
        assert resp.status_code == 404
        assert "no longer retained" in resp.json()["error"]


async def test_bad_numbers_and_foreign_tokens_are_refused(
    http: httpx.AsyncClient, redis_client: aioredis.Redis, keys: Keys
) -> None:
    await SourceRegistry(redis_client, keys, "i").register("cam", "media/cam.mp4")
    await SourceRegistry(redis_client, keys, "i").register("other", "media/other.mp4")
    await add(redis_client, keys, 1, time.time(), 1)
    for path, params in [
        ("/api/sources/cam/frames/-1", {}),
        ("/api/sources/cam/frames/99999999999999999999", {}),
        ("/api/sources/cam/frames/1", {"ts": "nan"}),
        ("/api/sources/cam/frames/1", {"ts": "inf"}),
        ("/api/sources/cam/frames/1", {"ts": "-5"}),
        ("/api/sources/cam/frames/1", {"ts": "1e300"}),
        ("/api/sources/cam/frames/1", {"ts": "soon"}),
    ]:
        resp = await http.get(path, params=params)
        assert resp.status_code in (400, 422), (path, params, resp.status_code)
        assert resp.json()["error"]
    assert (await http.get("/api/sources/nope/frames/1")).status_code == 404
    assert (
        await http.get("/api/sources/cam/frames/1", headers={"Authorization": ""})
    ).status_code == 401
    # A media token opens the frames of its own source only.
    minted = await http.post("/api/tokens", json={"source": "other"})
    token = minted.json()["token"]
    async with httpx.AsyncClient(base_url=http.base_url) as anon:  # no key: the token only
        resp = await anon.get("/api/sources/cam/frames/1", params={"token": token})
        assert resp.status_code == 403
        resp = await anon.get("/api/sources/other/frames/1", params={"token": token})
        assert resp.status_code == 404  # let in; that frame is not there
