"""SSE resume past RESUME_MAX against a real `lookout api`: an explicit `gap` event says how many
commentaries were skipped and where to page them from; nothing is skipped silently."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis.asyncio as aioredis

from api.streams import RESUME_MAX
from shared.keys import Keys
from shared.records import CommentaryRecord
from shared.sources import SourceRegistry
from tests.test_api_support import ApiServer, SseReader


@pytest.fixture
def api(test_env: dict[str, str]) -> Iterator[ApiServer]:
    server = ApiServer(test_env, "api-resume")
    yield server
    server.stop()


async def _fill_history(redis: aioredis.Redis, keys: Keys, count: int) -> list[str]:
    async with redis.pipeline(transaction=False) as pipe:
        for n in range(count):
            record = CommentaryRecord(
                cycle=f"c{n}", status="finished", text=f"t{n}", instruction=""
            )
            pipe.xadd(keys.history("cam"), record.to_fields())  # type: ignore[arg-type]
        ids = await pipe.execute()
    return [i.decode() for i in ids]


async def _resume(api: ApiServer, last_id: str) -> list[dict[str, object]]:
    url = f"{api.url}/api/sources/cam/events"
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream("GET", url, headers={"Last-Event-ID": last_id}) as resp,
    ):
        assert resp.status_code == 200
        return [{"event": e.event, "id": e.id, **e.data} for e in await SseReader.of(resp).ready()]


async def test_resume_past_resume_max_sends_a_gap_then_the_newest(
    api: ApiServer, redis_client: aioredis.Redis, keys: Keys
) -> None:
    await SourceRegistry(redis_client, keys, "describe").register("cam")
    ids = await _fill_history(redis_client, keys, RESUME_MAX + 50)
    events = await _resume(api, ids[9])  # 240 newer than that: 40 too many
    gap, replay = events[0], events[1:]
    assert gap["event"] == "gap"
    assert (gap["skipped"], gap["before"]) == (40, ids[50])
    assert [e["id"] for e in replay] == ids[50:]
    assert all(e["event"] == "commentary" for e in replay)
    async with httpx.AsyncClient(timeout=10) as http:  # the skipped ones, where the gap says
        page = await http.get(
            f"{api.url}/api/sources/cam/history", params={"before": gap["before"], "limit": 40}
        )
    assert [i["id"] for i in page.json()["items"]] == list(reversed(ids[10:50]))


async def test_resume_within_resume_max_has_no_gap(
    api: ApiServer, redis_client: aioredis.Redis, keys: Keys
) -> None:
    await SourceRegistry(redis_client, keys, "describe").register("cam")
    ids = await _fill_history(redis_client, keys, RESUME_MAX + 1)
    events = await _resume(api, ids[0])  # exactly RESUME_MAX newer
    assert [e["event"] for e in events] == ["commentary"] * RESUME_MAX
    assert [e["id"] for e in events] == ids[1:]
