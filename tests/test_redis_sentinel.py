"""Lookout behind Redis Sentinel (REDIS_URL=redis+sentinel://...): a real master, replica and
sentinel; frames in, commentary and an answer (arq through Sentinel) out of real worker and
API processes; the master killed mid-stream and the replica promoted: commentary goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import httpx
import pytest

from shared.bus import REDIS_ERRORS, connect_redis
from shared.keys import Keys
from shared.publisher import FramePublisher
from shared.sentinel import SentinelUrl, parse_sentinel_url
from shared.settings import SettingsError
from shared.settings_env import load_settings
from tests.e2e_support import SseEvent, SseReader
from tests.helpers import LookoutProcess, free_port, wait_for_port
from tests.redis_sentinel import RedisSentinel
from tests.worker_support import scene, until


def test_sentinel_urls_parse_and_bad_ones_are_refused() -> None:
    assert parse_sentinel_url("redis+sentinel://:pw@h1:26380,h2/svc/2") == SentinelUrl(
        sentinels=[("h1", 26380), ("h2", 26379)], service="svc", db=2, password="pw"
    )
    assert parse_sentinel_url("redis+sentinel://u:p%40x@[::1]:5000/svc").password == "p@x"
    for bad in (
        "redis+sentinel://h1:26379",  # no service
        "redis+sentinel:///svc",  # no sentinel
        "redis+sentinel://h1:port/svc",
        "redis+sentinel://h1/svc/zero",
        "redis+sentinel://h1/svc/0/extra",
    ):
        with pytest.raises(ValueError):
            parse_sentinel_url(bad)
        with pytest.raises(SettingsError, match="REDIS_URL"):
            load_settings({"REDIS_URL": bad}, env_file=None)
    with pytest.raises(SettingsError, match="REDIS_CLUSTER"):
        load_settings(
            {"REDIS_URL": "redis+sentinel://h1/svc", "REDIS_CLUSTER": "true"}, env_file=None
        )


@pytest.fixture
def sentinel() -> Iterator[RedisSentinel]:
    servers = RedisSentinel().start()
    yield servers
    servers.stop()


def _finished(event: SseEvent) -> bool:
    return event.event == "cycle" and event.data["event"] == "finished"


async def _feed(publisher: FramePublisher, stop: asyncio.Event) -> None:
    moving = 0
    while not stop.is_set():
        moving += 7
        with contextlib.suppress(*REDIS_ERRORS):
            await publisher.publish_jpeg(scene(3, moving))
        await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_commentary_and_asks_go_on_after_a_failover(sentinel: RedisSentinel) -> None:
    api_port = free_port()
    env = {
        "REDIS_URL": sentinel.url,
        "KEY_PREFIX": "sen",
        "SERVER_PORT": str(api_port),
        "INFERENCE_INTERVAL": "0.3",
        "CHANGE_THRESHOLD": "0",
        "LEASE_TTL": "3",
        "HEARTBEAT_TTL": "3",
    }
    keys = Keys("sen")
    settings = load_settings(env, env_file=None)
    client = connect_redis(sentinel.url)
    stop = asyncio.Event()
    feeder = asyncio.create_task(_feed(FramePublisher(client, settings, "cam"), stop))
    procs = [LookoutProcess(["api"], env, "api"), LookoutProcess(["worker"], env, "worker")]
    reader = None
    try:
        await asyncio.to_thread(wait_for_port, api_port, 30)
        base = f"http://127.0.0.1:{api_port}"
        reader = SseReader(f"{base}/api/sources/cam/events")
        await asyncio.to_thread(reader.next_matching, _finished, 60)
        async with httpx.AsyncClient(base_url=base) as http:
            # arq's queue works through Sentinel (it is one master).
            asked = await http.post("/api/sources/cam/ask", json={"question": "What is there?"})
            assert asked.status_code == 202, asked.text
            job = f"/api/jobs/{asked.json()['job_id']}"

            async def answered() -> bool:
                return (await http.get(job)).json()["status"] == "complete"

            for _ in range(300):
                if await answered():
                    break
                await asyncio.sleep(0.1)
            assert (await http.get(job)).json()["answer"]

        old_master = sentinel.master_port()
        sentinel.fail_master()
        await until(lambda: _promoted(sentinel, old_master), 30)
        reader.events = type(reader.events)()  # only what comes after the failover
        again = await asyncio.to_thread(reader.next_matching, _finished, 60)
        history = [i.decode() for i, _ in await client.xrange(keys.history("cam"))]
        assert again.data["history_id"] in history  # written to the promoted replica
    except BaseException:
        for proc in procs:
            print(f"===== {proc.name}\n{proc.log()[-5000:]}")
        raise
    finally:
        if reader is not None:
            reader.close()
        stop.set()
        await feeder
        await client.aclose()
        codes = [(proc.stop(), proc) for proc in reversed(procs)]
    for code, proc in codes:
        assert code in (0, -signal.SIGTERM), proc.log()


def _promoted(sentinel: RedisSentinel, old_master: int) -> bool:
    try:
        return sentinel.master_port() != old_master
    except OSError:
        return False
