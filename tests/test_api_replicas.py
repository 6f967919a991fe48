"""Two API replicas (two uvicorn processes) on one Redis behave as one API."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.messages import InstructionChanged, decode_message
from shared.sources import SourceRegistry
from tests.helpers import RedisServer
from tests.test_api_support import ApiServer, SseReader, add_history, say, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def replicas(test_env: dict[str, str]) -> Iterator[tuple[ApiServer, ApiServer]]:
    first = ApiServer(test_env, "api-a")
    try:
        second = ApiServer(test_env, "api-b")
    except Exception:
        first.stop()
        raise
    yield first, second
    first.stop()
    second.stop()


async def _collect(url: str, source: str, started: asyncio.Event, cycles: int) -> list[str]:
    """What one viewer sees: chunk texts and finished commentaries, in order."""
    seen: list[str] = []
    async with (
        httpx.AsyncClient(base_url=url, timeout=10) as http,
        http.stream("GET", f"/api/sources/{source}/events") as resp,
    ):
        sse = SseReader.of(resp)
        await sse.ready()
        started.set()
        finished = 0
        while finished < cycles:
            event = await sse.next(timeout=10)
            if event.event == "chunk":
                seen.append(f"chunk:{event.data['text']}")
            elif event.event == "cycle" and event.data["event"] == "finished":
                seen.append(f"finished:{event.id}:{event.data['text']}")
                finished += 1
    return seen


async def test_viewers_on_two_replicas_see_the_same_commentary_and_instruction(
    replicas: tuple[ApiServer, ApiServer], redis_client: aioredis.Redis, keys: Keys
) -> None:
    a, b = replicas
    await SourceRegistry(redis_client, keys, "describe").register("cam")
    ready = [asyncio.Event(), asyncio.Event()]
    viewers = [
        asyncio.create_task(_collect(server.url, "cam", event, 3))
        for server, event in zip((a, b), ready, strict=True)
    ]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 10)
    for n in range(3):
        await say(redis_client, keys, "cam", f"c{n}", [f"Scene {n}: ", "a dog ", "runs."])
    seen_a, seen_b = await asyncio.wait_for(asyncio.gather(*viewers), 20)
    assert seen_a == seen_b
    assert len(seen_a) == 12 and seen_a[3].startswith("finished:") and "Scene 2" in seen_a[-1]

    pubsub = redis_client.pubsub()
    await pubsub.subscribe(keys.control_channel("cam"))
    async with httpx.AsyncClient(timeout=10) as http:
        put = await http.put(
            f"{a.url}/api/sources/cam/instruction", json={"instruction": "Follow the dog."}
        )
        assert put.status_code == 200
        got = await wait_until(
            lambda: pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        )
        message = decode_message(got["data"])
        assert isinstance(message, InstructionChanged)
        assert (message.instruction, message.rev) == ("Follow the dog.", 1)
        for server in (a, b):
            shown = (await http.get(f"{server.url}/api/sources/cam")).json()
            assert (shown["instruction"], shown["instruction_rev"]) == ("Follow the dog.", 1)
    await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_viewers_are_told_of_a_redis_restart_and_resume_from_history() -> None:
    redis_server = RedisServer().start()
    api = ApiServer({"REDIS_URL": redis_server.url, "KEY_PREFIX": "restart"}, "api-restart")
    keys = Keys("restart")
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await SourceRegistry(client, keys, "describe").register("cam")
        async with (
            httpx.AsyncClient(base_url=api.url, timeout=10) as http,
            http.stream("GET", "/api/sources/cam/events") as resp,
        ):
            sse = SseReader.of(resp)
            await sse.ready()
            await say(client, keys, "cam", "c1", ["before"])
            assert (await sse.until("cycle")).data["event"] == "started"
            redis_server.stop()
            assert (await http.get("/health")).status_code == 503
            redis_server.start()  # same port, empty (no persistence)
            await client.aclose()
            client = aioredis.Redis.from_url(redis_server.url)
            await SourceRegistry(client, keys, "describe").register("cam")
            # Said while the relay was still reconnecting: only the history has it.
            missed = await add_history(client, keys, "cam", "said during the outage")
            notice = await sse.until("reconnected", timeout=15)
            assert notice.data == {"source": "cam"}
            resumed = await sse.until("commentary")
            assert (resumed.id, resumed.data["text"]) == (missed, "said during the outage")
            assert (await http.get("/health")).status_code == 200
            metrics = (await http.get("/metrics")).text
            assert "lookout_api_redis_reconnects_total 1.0" in metrics
    finally:
        await client.aclose()
        api.stop()
        redis_server.stop()
