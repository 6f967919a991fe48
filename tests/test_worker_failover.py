"""Failover between two real `lookout worker` processes (CPU engine): kill -9 one of them."""

from __future__ import annotations

import asyncio
import signal
import statistics
import time

import pytest
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.messages import CycleEvent
from tests.helpers import REPO, LookoutProcess
from tests.test_worker_sharing import SOURCES, overlaps, register_and_feed
from tests.worker_support import FAST, Recorder, background, fast_settings, subscribed

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (REPO / "worker" / "engines" / "cpu.py").exists(), reason="CPU engine not present"
    ),
]


def holders_of(values: dict[str, bytes | None]) -> set[str]:
    return {v.decode() for v in values.values() if v}


async def test_kill_9_one_worker_the_other_takes_its_sources(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    env = {**test_env, **FAST, "ENGINE": "cpu", "CHANGE_THRESHOLD": "0", "LEASE_TTL": "2"}
    settings = fast_settings(test_env, **{k: v for k, v in env.items() if k not in test_env})
    # The CPU engine's people detector needs frames of at least 64x128.
    feeders = await register_and_feed(redis_client, keys, settings, SOURCES, (320, 240))
    rec = Recorder(test_env["REDIS_URL"], keys, SOURCES)
    procs = {w: LookoutProcess(["worker", "--worker-id", w], env, w) for w in ("wa", "wb")}
    stop = asyncio.Event()
    try:
        async with background(rec.run(), *(f.run(stop) for f in feeders)):
            await subscribed(rec)
            # Both workers hold sources, every source is commented on.
            await rec.wait(lambda: all(rec.events(s, "finished") for s in SOURCES), within=40)
            held: dict[str, bytes | None] = {}
            for _ in range(100):
                held = {s: await redis_client.get(keys.lease(s)) for s in SOURCES}
                if holders_of(held) == {"wa", "wb"}:
                    break
                await asyncio.sleep(0.1)
            assert holders_of(held) == {"wa", "wb"}, held
            victim_sources = [s for s, w in held.items() if w == b"wa"]
            procs["wa"].stop(signal.SIGKILL)
            killed = time.time()

            def resumed(source: str) -> list[float]:
                return [
                    t
                    for t, e in rec.messages
                    if isinstance(e, CycleEvent)
                    and e.event == "finished"
                    and e.source == source
                    and e.worker == "wb"
                    and t > killed
                ]

            await rec.wait(lambda: all(resumed(s) for s in SOURCES), within=20)
            failover = max(min(resumed(s)) for s in victim_sources) - killed
            stop.set()
        assert procs["wb"].stop(signal.SIGTERM) == 0, procs["wb"].log()[-2000:]
    finally:
        for proc in procs.values():
            proc.stop(signal.SIGKILL)
    events = [(t, e) for t, e in rec.messages if isinstance(e, CycleEvent)]
    assert overlaps(events, {"wa": killed}) == []
    # The survivor's clean stop released its leases and deleted its heartbeat.
    assert not await redis_client.exists(*(keys.lease(s) for s in SOURCES))
    assert not await redis_client.exists(keys.worker_status("wb"))
    latency = {
        s: statistics.median(e.latency_ms or 0 for e in rec.events(s, "first_chunk"))
        for s in SOURCES
    }
    report = (
        f"failover (LEASE_TTL=2): first commentary on the survivor {failover:.2f}s after kill -9; "
        f"median first-chunk latency ms per source: "
        + ", ".join(f"{s}={v:.0f}" for s, v in latency.items())
    )
    print(report)
