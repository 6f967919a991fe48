"""`/api/status` gives numbers as JSON numbers, never the strings Redis stores (issue 14),
through a real `lookout api` process reading hashes written as producers and workers do."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.keys import Keys
from shared.sources import SourceRegistry
from shared.status_records import ProducerStatus, WorkerBeat
from tests.helpers import RedisServer
from tests.test_api_support import ApiServer

NUMERIC_TEXT = re.compile(r"^-?\d+(\.\d+)?$")


@pytest.fixture
def api(redis_server: RedisServer, test_env: dict[str, str]) -> Iterator[str]:
    server = ApiServer(test_env, "api-status")
    yield server.url
    server.stop()


def strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every (path, text) string leaf of a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from strings(item, f"{path}[{n}]")
    elif isinstance(value, str):
        yield path, value


async def test_status_numbers_are_numbers(api: str, redis_url: str, keys: Keys) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    await SourceRegistry(client, keys, "describe").register("cam", "clip.mp4")
    now = time.time()
    producer = ProducerStatus(state="live", kind="file", fps=9.84, frames=12, updated_at=now)
    await client.hset(keys.producer_status("cam"), mapping=producer.to_fields())  # type: ignore[arg-type,misc]
    beat = WorkerBeat(
        worker="w1",
        engine="transformers",
        sources=["cam"],
        beat_ts=now,
        extra={"vram_allocated_mib": "1234", "decode": "static", "tts": "on", "ratio": "0.5"},
    )
    await client.hset(keys.worker_status("w1"), mapping=beat.to_fields())  # type: ignore[arg-type,misc]
    await client.set(keys.lease("cam"), "w1")
    await client.hset(  # type: ignore[misc]
        keys.worker_stats("cam"),
        mapping={"cycles": "3", "latency_sum_ms": "2132.5252056", "last_latency_ms": "700.1"},
    )
    await client.aclose()
    async with httpx.AsyncClient(timeout=10) as http:
        body = (await http.get(f"{api}/api/status")).json()
    source = body["sources"][0]
    assert source["producer"]["fps"] == 9.84 and source["producer"]["frames"] == 12
    assert source["stats"]["latency_sum_ms"] == pytest.approx(2132.5252056)
    assert source["stats"]["cycles"] == 3 and source["tts"] is True
    extra = body["workers"]["w1"]["extra"]
    assert extra == {"vram_allocated_mib": 1234, "decode": "static", "tts": "on", "ratio": 0.5}
    numeric = [(path, text) for path, text in strings(body) if NUMERIC_TEXT.match(text)]
    assert numeric == [], numeric
