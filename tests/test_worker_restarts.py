"""A real `lookout worker` killed -9 and started again with the same --worker-id (CPU engine)."""

from __future__ import annotations

import asyncio
import signal

import pytest
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.messages import CycleEvent
from shared.records import CommentaryRecord
from tests.helpers import REPO, LookoutProcess
from tests.test_worker_sharing import register_and_feed
from tests.worker_support import FAST, Recorder, background, fast_settings, subscribed

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (REPO / "worker" / "engines" / "cpu.py").exists(), reason="CPU engine not present"
    ),
]


async def _history(redis: aioredis.Redis, keys: Keys) -> list[CommentaryRecord]:
    return [CommentaryRecord.from_fields(f) for _, f in await redis.xrange(keys.history("cam"))]


async def _until_history(redis: aioredis.Redis, keys: Keys, count: int, within: float) -> None:
    for _ in range(int(within * 10)):
        if len(await _history(redis, keys)) >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} history records after {within}s")


async def test_cycle_ids_stay_unique_across_a_restart_with_the_same_worker_id(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    env = {**test_env, **FAST, "ENGINE": "cpu", "CHANGE_THRESHOLD": "0", "LEASE_TTL": "2"}
    settings = fast_settings(test_env, **{k: v for k, v in env.items() if k not in test_env})
    feeders = await register_and_feed(redis_client, keys, settings, ["cam"], (320, 240))
    stop = asyncio.Event()
    first = LookoutProcess(["worker", "--worker-id", "w2"], env, "w2-first")
    second: LookoutProcess | None = None
    try:
        async with background(*(f.run(stop) for f in feeders)):
            await _until_history(redis_client, keys, 2, within=40)
            first.stop(signal.SIGKILL)
            before = len(await _history(redis_client, keys))
            second = LookoutProcess(["worker", "--worker-id", "w2"], env, "w2-second")
            await _until_history(redis_client, keys, before + 2, within=40)
            stop.set()
        assert second.stop(signal.SIGTERM) == 0, second.log()[-2000:]
    finally:
        first.stop(signal.SIGKILL)
        if second is not None:
            second.stop(signal.SIGKILL)
    cycles = [r.cycle for r in await _history(redis_client, keys) if r.worker == "w2"]
    assert len(cycles) >= 4
    assert len(set(cycles)) == len(cycles), cycles
    # Two runs, two nonces: ids of the second run share no prefix with the first's.
    assert len({c.rsplit("-", 1)[0] for c in cycles}) == 2, cycles


async def _kill_mid_cycle(
    redis: aioredis.Redis, keys: Keys, env: dict[str, str], attempts: int = 10
) -> CommentaryRecord:
    """Start worker `wa` and kill -9 it while a cycle is open; the open record it left."""
    for attempt in range(attempts):
        proc = LookoutProcess(["worker", "--worker-id", "wa"], env, f"wa-{attempt}")
        try:
            for _ in range(3000):  # up to ~30 s for a cycle to begin
                if await redis.exists(keys.open_cycle("cam")):
                    proc.stop(signal.SIGKILL)
                    break
                await asyncio.sleep(0.01)
        finally:
            proc.stop(signal.SIGKILL)
        left = await redis.hgetall(keys.open_cycle("cam"))  # type: ignore[misc]
        if left:  # else the kill landed between two cycles: try again
            return CommentaryRecord.from_fields(left)
    raise AssertionError(f"no kill landed inside a cycle in {attempts} attempts")


async def test_a_cycle_cut_by_kill_9_ends_as_interrupted_and_lost(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    env = {**test_env, **FAST, "ENGINE": "cpu", "CHANGE_THRESHOLD": "0", "LEASE_TTL": "2"}
    settings = fast_settings(test_env, **{k: v for k, v in env.items() if k not in test_env})
    feeders = await register_and_feed(redis_client, keys, settings, ["cam"], (320, 240))
    rec = Recorder(test_env["REDIS_URL"], keys, ["cam"])
    stop = asyncio.Event()
    survivor: LookoutProcess | None = None
    try:
        async with background(rec.run(), *(f.run(stop) for f in feeders)):
            await subscribed(rec)
            left = await _kill_mid_cycle(redis_client, keys, env)
            assert (left.status, left.worker) == ("open", "wa")
            survivor = LookoutProcess(["worker", "--worker-id", "wb"], env, "wb")

            def closed() -> list[CycleEvent]:
                return [e for e in rec.events("cam", "interrupted") if e.cycle == left.cycle]

            await rec.wait(lambda: bool(closed()), within=30)
            stop.set()
        assert survivor.stop(signal.SIGTERM) == 0, survivor.log()[-2000:]
    finally:
        if survivor is not None:
            survivor.stop(signal.SIGKILL)
    event = closed()[0]
    assert (event.worker, event.text) == ("wa", left.text.strip())
    lost = [r for r in await _history(redis_client, keys) if r.cycle == left.cycle]
    assert [(r.status, r.text, r.worker) for r in lost] == [("lost", left.text.strip(), "wa")]
    entries = await redis_client.xrange(keys.history("cam"))
    assert event.history_id in {i.decode() for i, _ in entries}
    assert not await redis_client.exists(keys.open_cycle("cam")) or (
        (await redis_client.hget(keys.open_cycle("cam"), "worker")) == b"wb"  # type: ignore[misc]
    )
