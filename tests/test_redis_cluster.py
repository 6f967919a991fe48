"""Lookout on a real 3-node Redis Cluster (REDIS_CLUSTER=true): a source per shard, frames in,
commentary out through real worker and API processes (CPU engine), one node restarted.

What a restart of a node without persistence loses, shown here: the keys of the sources on
that shard (frames, state, history, lease) and whatever was published while it was down.
What comes back by itself: the frame publishers register their source again, the worker takes
the lease again and comments, and the API's sharded subscription resubscribes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from lookout.health import Unhealthy, check, check_worker
from shared.bus import REDIS_ERRORS, connect_redis
from shared.keys import Keys
from shared.publisher import FramePublisher
from shared.settings import SettingsError
from shared.settings_env import load_settings
from shared.sources import SourceRegistry
from tests.e2e_support import SseEvent, SseReader
from tests.helpers import REPO, LookoutProcess, free_port, wait_for_port
from tests.redis_cluster import RedisCluster
from tests.worker_support import scene, until

PREFIX = "clu"
INSTRUCTION = "Name the colours."
KEYS = Keys(PREFIX)


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    nodes = RedisCluster().start()
    yield nodes
    nodes.stop()


def one_source_per_node(cluster: RedisCluster, keys: Keys) -> dict[int, str]:
    """Port -> a source name whose keys live on that node."""
    chosen: dict[int, str] = {}
    for i in range(200):
        name = f"cam{i}"
        chosen.setdefault(cluster.port_of(keys.frames(name)), name)
        if len(chosen) == len(cluster.ports):
            return chosen
    raise AssertionError("no source name for every node")


def globals_on_seed(cluster: RedisCluster) -> tuple[Keys, str]:
    """A key prefix whose source registry, and a worker id whose heartbeat, live on the seed
    node (REDIS_URL). Another node then holds only its sources' keys: while it is down the
    other shards go on (what a node holding global keys stops is in docs/operations.md)."""
    seed = cluster.ports[0]
    prefix = next(f"e2e{i}" for i in range(500) if cluster.port_of(f"e2e{i}:sources") == seed)
    keys = Keys(prefix)
    worker = next(
        f"w{i}" for i in range(500) if cluster.port_of(keys.worker_status(f"w{i}")) == seed
    )
    return keys, worker


def test_every_key_and_channel_of_a_source_shares_one_slot() -> None:
    per_source = [
        KEYS.source_state, KEYS.producer_status, KEYS.producer_claim, KEYS.lease, KEYS.removed,
        KEYS.open_cycle, KEYS.worker_stats, KEYS.frames, KEYS.history, KEYS.text_channel,
        KEYS.audio_channel, KEYS.events_channel, KEYS.control_channel,
    ]  # fmt: skip
    for name in ("cam", "a", "Yard-2_b"):
        names = [build(name) for build in per_source]
        assert {key_slot(n.encode()) for n in names} == {key_slot(name.encode())}
        assert all(KEYS.source_from_channel(n) == name for n in names)
    assert key_slot(KEYS.frames("cam").encode()) != key_slot(KEYS.frames("cam2").encode())
    with pytest.raises(ValueError):
        KEYS.source_from_channel("clu:src:cam:text")  # the untagged form is not a source key


def _finished(event: SseEvent) -> bool:
    return event.event == "cycle" and event.data["event"] == "finished"


async def _next_finished(reader: SseReader, within: float) -> SseEvent:
    return await asyncio.to_thread(reader.next_matching, _finished, within)


async def _feed(publisher: FramePublisher, stop: asyncio.Event) -> None:
    """Frames of a changing scene at 5 fps, like a producer; Redis errors are waited out."""
    moving = 0
    while not stop.is_set():
        moving += 7
        with contextlib.suppress(*REDIS_ERRORS):
            await publisher.publish_jpeg(scene(sum(map(ord, publisher.source)) % 5, moving))
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def feeding(env: dict[str, str], names: list[str]) -> AsyncIterator[aioredis.Redis]:
    settings = load_settings(env, env_file=None)
    client = connect_redis(settings.redis_url, cluster=True)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(_feed(FramePublisher(client, settings, name), stop)) for name in names
    ]
    try:
        yield client
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await client.aclose()


@pytest.mark.slow
async def test_a_source_per_shard_and_a_node_restarted_mid_stream(cluster: RedisCluster) -> None:
    keys, worker_id = globals_on_seed(cluster)
    by_port = one_source_per_node(cluster, keys)
    victim_port = next(p for p in by_port if p != cluster.ports[0])
    victim = by_port[victim_port]
    api_port, metrics_port = free_port(), free_port()
    env = {
        "REDIS_URL": cluster.url,
        "REDIS_CLUSTER": "true",
        "KEY_PREFIX": keys.prefix,
        "WORKER_ID": worker_id,
        "SERVER_PORT": str(api_port),
        "WORKER_METRICS_PORT": str(metrics_port),
        "INFERENCE_INTERVAL": "0.3",
        "CHANGE_THRESHOLD": "0",
        "LEASE_TTL": "3",
        "HEARTBEAT_TTL": "3",
    }
    procs = [LookoutProcess(["api"], env, "api"), LookoutProcess(["worker"], env, "worker")]
    readers: dict[str, SseReader] = {}
    try:
        await asyncio.to_thread(wait_for_port, api_port, 30)
        base = f"http://127.0.0.1:{api_port}"
        async with feeding(env, list(by_port.values())) as client:

            async def registered() -> bool:
                names = await client.smembers(keys.sources)  # type: ignore[misc]
                return {n.encode() for n in by_port.values()} <= set(names)

            # A viewer of a source not registered yet gets a 404 and no stream.
            await until(registered, 30, "every source registered by its first frame")
            readers = {n: SseReader(f"{base}/api/sources/{n}/events") for n in by_port.values()}
            # 1. Every shard's source: frames in, commentary out.
            firsts = await asyncio.gather(*(_next_finished(r, 60) for r in readers.values()))
            for name, first in zip(readers, firsts, strict=True):
                assert first.data["source"] == name and first.data["text"]
            history_of = {
                name: [i.decode() for i, _ in await client.xrange(keys.history(name))]
                for name in readers
            }
            assert all(history_of.values()), "commentary reached every history stream"

            # An instruction goes out by SPUBLISH on the source's shard: `lookout tail '*'`
            # (sharded subscriptions following the registry) prints it, the worker uses it.
            tail = LookoutProcess(["tail", "*"], env, "tail")
            procs.append(tail)
            await until(lambda: " text " in tail.log(), 20)  # it follows the sources now
            async with httpx.AsyncClient(base_url=base) as http:
                put = await http.put(
                    f"/api/sources/{victim}/instruction", json={"instruction": INSTRUCTION}
                )
            assert put.status_code == 200, put.text
            await until(lambda: f"{victim} instruction rev=1: {INSTRUCTION}" in tail.log(), 20)
            started = await asyncio.to_thread(
                readers[victim].next_matching,
                lambda e: e.event == "cycle" and e.data["event"] == "started",
                30,
            )
            while started.data["instruction"] != INSTRUCTION:  # one may have begun before
                started = await asyncio.to_thread(
                    readers[victim].next_matching,
                    lambda e: e.event == "cycle" and e.data["event"] == "started",
                    30,
                )
            assert tail.stop() in (0, -signal.SIGTERM, -signal.SIGINT)

            # 2. The victim's node goes down mid-stream; the processes notice, and the
            # sources on the other shards are still commented meanwhile.
            api, worker = procs[0], procs[1]
            api_seen, worker_seen = len(api.log()), len(worker.log())
            cluster.stop_node(victim_port)
            await until(lambda: "Error 111" in worker.log()[worker_seen:], 20)
            await until(lambda: "subscription lost" in api.log()[api_seen:], 20)
            others = [name for port, name in by_port.items() if port != victim_port]
            for name in others:
                readers[name].events = type(readers[name].events)()
            during = await asyncio.gather(*(_next_finished(readers[n], 30) for n in others))
            assert [e.data["source"] for e in during] == others

            # 3. It comes back empty: every source is commented again, the victim included
            # (its feeder registered it again, the worker took its lease again).
            cluster.start_node(victim_port)
            await asyncio.to_thread(cluster.wait_ok)
            for reader in readers.values():
                reader.events = type(reader.events)()  # only what comes from now on
            agains = await asyncio.gather(*(_next_finished(r, 60) for r in readers.values()))
            for name, again in zip(readers, agains, strict=True):
                kept = [i.decode() for i, _ in await client.xrange(keys.history(name))]
                assert again.data["history_id"] in kept
                # Lost with the node (no persistence): the victim's older history only.
                assert (history_of[name][0] in kept) is (name != victim), name
            assert victim in [m.decode() for m in await client.smembers(keys.sources)]

        # 4. The worker's metrics (sharded subscriptions that follow the registry) counted
        # finished cycles on every shard.
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
        for name in by_port.values():
            assert f'source="{name}"' in metrics, metrics
    except BaseException:
        for proc in procs:
            print(f"===== {proc.name}\n{proc.log()[-6000:]}")
        raise
    finally:
        if victim_port not in cluster.procs:  # failed while it was down: leave it as found
            cluster.start_node(victim_port)
            cluster.wait_ok()
        for reader in readers.values():
            reader.close()
        codes = [(proc.stop(), proc) for proc in reversed(procs)]
    for code, proc in codes:
        assert code in (0, -signal.SIGTERM), proc.log()


async def test_job_queues_are_refused_clearly(cluster: RedisCluster) -> None:
    env = {"REDIS_URL": cluster.url, "REDIS_CLUSTER": "true", "KEY_PREFIX": "clu2"}
    client = connect_redis(cluster.url, cluster=True)
    try:
        await SourceRegistry(client, Keys("clu2"), "describe").register("cam")
    finally:
        await client.aclose()
    supervise = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "lookout", "--env-file", "/nonexistent", "producer", "--supervise"],
        cwd=REPO,
        env={**_base_env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert supervise.returncode == 2
    assert "does not run on a Redis Cluster" in supervise.stderr

    api_port = free_port()
    api = LookoutProcess(["api"], {**env, "SERVER_PORT": str(api_port)}, "api")
    try:
        await asyncio.to_thread(wait_for_port, api_port, 30)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}") as http:
            asked = await http.post("/api/sources/cam/ask", json={"question": "what is there?"})
            started = await http.post(
                "/api/sources", json={"name": "yard", "url": "rtsp://camera.example/live"}
            )
            unknown = await http.get("/api/jobs/0123456789abcdef0123456789abcdef")
            deleted = await http.delete("/api/sources/cam")  # no job queue needed
            listed = await http.get("/api/sources")
        for response in (asked, started, unknown):
            assert response.status_code == 501, response.text
            assert "does not run on a Redis Cluster" in response.json()["error"]
        assert deleted.status_code in (200, 204), deleted.text
        assert listed.status_code == 200 and "cam" not in listed.text
    finally:
        assert api.stop() in (0, -signal.SIGTERM), api.log()


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "KEY_PREFIX")}


def test_health_checks_and_settings_on_a_cluster(cluster: RedisCluster) -> None:
    settings = load_settings(
        {"REDIS_URL": cluster.url, "REDIS_CLUSTER": "true", "KEY_PREFIX": "clu3"}, env_file=None
    )
    assert check("producer", settings).startswith("producer ok")
    with pytest.raises(Unhealthy, match="no heartbeat"):
        check_worker(settings, 3.0, host="nowhere")
    with pytest.raises(SettingsError, match="braces"):
        load_settings({"KEY_PREFIX": "a{b}"}, env_file=None)
