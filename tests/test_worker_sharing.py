"""Many sources on one worker, and sources shared and failed over between in-process workers."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time

import redis.asyncio as aioredis

from shared.bus import REDIS_ERRORS
from shared.keys import Keys
from shared.messages import CycleEvent
from shared.settings import Settings
from shared.sources import SourceRegistry
from tests.helpers import RedisServer
from tests.scripted_engine import ScriptedEngine
from tests.worker_support import (
    Feeder,
    Recorder,
    background,
    fast_settings,
    scene,
    subscribed,
    worker,
)
from worker.service import run_worker

SOURCES = ["cam-a", "cam-b", "cam-c"]


async def register_and_feed(
    redis: aioredis.Redis,
    keys: Keys,
    settings: Settings,
    names: list[str],
    size: tuple[int, int] = (160, 90),
) -> list[Feeder]:
    # The scenes are still: an instruction that asks for repeats keeps the CPU engine
    # commenting every cycle (else it says the scene once, then skips with "nothing new").
    registry = SourceRegistry(redis, keys, "Describe the scene every time.")
    for name in names:
        await registry.register(name)
    return [Feeder(redis, keys, name, scene(10 + i, 0, *size)) for i, name in enumerate(names)]


def overlaps(events: list[tuple[float, CycleEvent]], ended_at: dict[str, float]) -> list[str]:
    """Sources whose commentary cycles by two different workers overlapped in time."""
    spans: dict[str, list[tuple[float, float, str]]] = {}
    opened: dict[str, tuple[float, str, str]] = {}
    for t, e in events:
        if e.kind != "commentary":
            continue
        if e.event == "started":
            opened[e.cycle] = (t, e.worker, e.source)
        elif e.event in ("finished", "interrupted", "failed") and e.cycle in opened:
            start, who, source = opened.pop(e.cycle)
            spans.setdefault(source, []).append((start, t, who))
    for start, who, source in opened.values():  # never ended: the worker died (or the test stopped)
        spans.setdefault(source, []).append((start, ended_at.get(who, time.time()), who))
    bad = []
    for source, items in spans.items():
        items.sort()
        for (_, e1, w1), (s2, _, w2) in zip(items, items[1:], strict=False):
            if w1 != w2 and s2 < e1:
                bad.append(f"{source}: {w1} until {e1:.3f}, {w2} from {s2:.3f}")
    return bad


async def test_three_sources_one_worker_round_robin_none_starves(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    settings = fast_settings(test_env, CHANGE_THRESHOLD="0", INFERENCE_INTERVAL="0")
    feeders = await register_and_feed(redis_client, keys, settings, SOURCES)
    rec = Recorder(test_env["REDIS_URL"], keys, SOURCES)
    engine = ScriptedEngine(chunks=("One ", "two."), delay=0.05)
    stop = asyncio.Event()
    async with background(rec.run(), *(f.run(stop) for f in feeders)):
        await subscribed(rec)
        async with worker(settings, engine):  # type: ignore[arg-type]
            await rec.wait(lambda: all(len(rec.events(s, "finished")) >= 4 for s in SOURCES))
        stop.set()
    counts = {s: len(rec.events(s, "finished")) for s in SOURCES}
    assert max(counts.values()) - min(counts.values()) <= 2, counts
    # Round-robin: the first cycles visit every source before any source gets a second one.
    order = [e.source for e in rec.events(name="started")]
    assert set(order[:3]) == set(SOURCES)
    assert all(order[:9].count(s) >= 2 for s in SOURCES), order[:9]
    latency = {
        s: statistics.mean(e.latency_ms or 0 for e in rec.events(s, "first_chunk")) for s in SOURCES
    }
    print(f"cycles per source {counts}; mean latency ms {latency}")
    assert engine.max_concurrent == 1


async def test_cap_on_sources_per_worker(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    settings = fast_settings(test_env, MAX_SOURCES_PER_WORKER="2")
    await register_and_feed(redis_client, keys, settings, SOURCES)
    async with worker(settings, ScriptedEngine()):
        for _ in range(100):
            held = [s for s in SOURCES if await redis_client.get(keys.lease(s)) == b"w1"]
            if len(held) == 2:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(settings.lease_ttl)  # several lease rounds later: still two
        held = [s for s in SOURCES if await redis_client.get(keys.lease(s)) == b"w1"]
    assert len(held) == 2


async def test_two_workers_split_sources_and_take_over_from_a_crashed_one(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    settings = fast_settings(test_env, CHANGE_THRESHOLD="0", LEASE_TTL="1")
    names = [*SOURCES, "cam-d"]
    feeders = await register_and_feed(redis_client, keys, settings, names)
    rec = Recorder(test_env["REDIS_URL"], keys, names)
    engines = {
        w: ScriptedEngine(chunks=("Part one, ", "part two."), delay=0.05) for w in ("w1", "w2")
    }
    stops = {w: asyncio.Event() for w in engines}
    feed_stop = asyncio.Event()
    async with background(rec.run(), *(f.run(feed_stop) for f in feeders)):
        await subscribed(rec)
        tasks = {
            w: asyncio.create_task(run_worker(settings, e, stop=stops[w], worker_id=w, grace=1.0))
            for w, e in engines.items()
        }
        try:
            takeover, moved, crashed = await crash_and_take_over(
                redis_client, keys, rec, names, tasks
            )
        finally:
            for w, task in tasks.items():
                stops[w].set()
                if w == "w1":
                    task.cancel()
            await asyncio.wait_for(asyncio.gather(*tasks.values(), return_exceptions=True), 15)
            feed_stop.set()
    print(
        f"failover: commentary of {moved} resumed on w2 {takeover:.2f}s after w1 died (LEASE_TTL=1)"
    )
    assert takeover < 3 * settings.lease_ttl + 2  # lease expiry + one lease round + a cycle
    events = [(t, e) for t, e in rec.messages if isinstance(e, CycleEvent)]
    assert overlaps(events, {"w1": crashed}) == []


async def crash_and_take_over(
    redis_client: aioredis.Redis,
    keys: Keys,
    rec: Recorder,
    names: list[str],
    tasks: dict[str, asyncio.Task[None]],
) -> tuple[float, list[str], float]:
    """Wait for an even split, kill w1, return (take-over seconds, w1's sources, kill time)."""
    holders: dict[str, bytes | None] = {}
    for _ in range(200):
        holders = {s: await redis_client.get(keys.lease(s)) for s in names}
        if sorted(v or b"" for v in holders.values()) == [b"w1", b"w1", b"w2", b"w2"]:
            break
        await asyncio.sleep(0.05)
    assert sorted(v or b"" for v in holders.values()) == [b"w1", b"w1", b"w2", b"w2"], holders
    moved = [s for s, w in holders.items() if w == b"w1"]
    await rec.wait(lambda: all(rec.events(s, "finished") for s in names))
    tasks["w1"].cancel()  # an abrupt death: no lease is released
    crashed = time.time()
    with contextlib.suppress(asyncio.CancelledError):
        await tasks["w1"]

    def started_on_w2(source: str) -> list[float]:
        return [
            t
            for t, e in rec.messages
            if isinstance(e, CycleEvent)
            and (e.event, e.source, e.worker) == ("started", source, "w2")
            and t > crashed
        ]

    await rec.wait(lambda: all(started_on_w2(s) for s in moved), within=15)
    takeover = max(min(started_on_w2(s)) for s in moved) - crashed
    return takeover, moved, crashed


async def test_worker_survives_redis_going_away_and_coming_back(test_env: dict[str, str]) -> None:
    server = RedisServer().start()
    try:
        env = {**test_env, "REDIS_URL": server.url}
        settings = fast_settings(env, CHANGE_THRESHOLD="0", LEASE_TTL="2")
        keys = Keys(settings.key_prefix)
        client = aioredis.Redis.from_url(server.url)
        engine = ScriptedEngine(chunks=("Up.",), delay=0.01)
        stop_feed = asyncio.Event()
        async with worker(settings, engine) as task:
            [feeder] = await register_and_feed(client, keys, settings, ["cam"])
            async with background(feeder.run(stop_feed)):
                await wait_for_history(client, keys, 1)
                server.stop()
                await asyncio.sleep(1.5)
                assert not task.done()
                before = len(engine.calls)
                server.start()  # same port, empty: the source must be registered again
                await register_and_feed(client, keys, settings, ["cam"])
                await wait_for_history(client, keys, 1, within=20)
            stop_feed.set()
        assert len(engine.calls) > before
        await client.aclose()
    finally:
        server.stop()


async def wait_for_history(client: aioredis.Redis, keys: Keys, n: int, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(*REDIS_ERRORS):
            if await client.xlen(keys.history("cam")) >= n:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {n} commentaries in history within {within}s")
