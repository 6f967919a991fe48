"""Cycle latency across sources sharing one worker, and failover time between two workers.

    .venv/bin/python bench/worker_sharing.py [--seconds 20] [--runs 3] [--lease-ttl 5]

Real `lookout worker` processes with the CPU engine, a private redis-server, synthetic
640x360 frames at 10 fps with a moving square (so every window changes), default cycle
settings (CAPTURE_FPS 2, 4 frames every 2nd sample, INFERENCE_INTERVAL 1 s) except
CHANGE_THRESHOLD=0, so every due cycle runs.

1. Latency: first-chunk latency (newest frame's capture → first chunk) per source with three
   sources on one worker, against the baseline of one source alone, measured in the same run.
2. Failover: two workers split three sources; the one holding more is killed with SIGKILL;
   time from the kill to the survivor's first `started` and `finished` event for each moved
   source (the slowest moved source counts). Median of --runs runs.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import time
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.keys import Keys  # noqa: E402
from shared.messages import CycleEvent  # noqa: E402
from shared.sources import SourceRegistry  # noqa: E402
from tests.helpers import LookoutProcess, RedisServer  # noqa: E402
from tests.worker_support import Feeder, Recorder, background, scene, subscribed  # noqa: E402

SOURCES = ["cam-a", "cam-b", "cam-c"]


class MovingFeeder(Feeder):
    """A feeder whose square moves a little every frame."""

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.publish(scene(7, self.seq * 3, 640, 360))
            await asyncio.sleep(1 / self.fps)


async def prepare(url: str, prefix: str, names: list[str]) -> tuple[aioredis.Redis, list[Feeder]]:
    redis = aioredis.Redis.from_url(url)
    keys = Keys(prefix)
    registry = SourceRegistry(redis, keys, "Describe what is happening in the video.")
    for name in names:
        await registry.register(name)
    return redis, [MovingFeeder(redis, keys, n, b"") for n in names]


def env_for(url: str, prefix: str, lease_ttl: float) -> dict[str, str]:
    return {
        "REDIS_URL": url,
        "KEY_PREFIX": prefix,
        "ENGINE": "cpu",
        "CHANGE_THRESHOLD": "0",
        "LEASE_TTL": str(lease_ttl),
        "LOG_LEVEL": "WARNING",
    }


async def latencies(
    url: str, prefix: str, names: list[str], seconds: float
) -> dict[str, list[float]]:
    redis, feeders = await prepare(url, prefix, names)
    rec = Recorder(url, Keys(prefix), names)
    stop = asyncio.Event()
    proc = LookoutProcess(["worker", "--worker-id", "solo"], env_for(url, prefix, 5), "bench")
    try:
        async with background(rec.run(), *(f.run(stop) for f in feeders)):
            await subscribed(rec)
            await rec.wait(lambda: all(rec.events(n, "first_chunk") for n in names), within=60)
            start = time.time()
            await asyncio.sleep(seconds)
            stop.set()
    finally:
        proc.stop(signal.SIGTERM)
        await redis.aclose()
    return {
        n: [e.latency_ms or 0.0 for t, e in rec_events(rec, n, "first_chunk") if t >= start]
        for n in names
    }


def rec_events(rec: Recorder, source: str, name: str) -> list[tuple[float, CycleEvent]]:
    return [
        (t, m)
        for t, m in rec.messages
        if isinstance(m, CycleEvent) and m.source == source and m.event == name
    ]


async def failover(url: str, prefix: str, lease_ttl: float) -> tuple[float, float]:
    redis, feeders = await prepare(url, prefix, SOURCES)
    keys = Keys(prefix)
    rec = Recorder(url, keys, SOURCES)
    stop = asyncio.Event()
    env = env_for(url, prefix, lease_ttl)
    procs = {w: LookoutProcess(["worker", "--worker-id", w], env, w) for w in ("wa", "wb")}
    try:
        async with background(rec.run(), *(f.run(stop) for f in feeders)):
            await subscribed(rec)
            await rec.wait(lambda: all(rec.events(n, "finished") for n in SOURCES), within=60)
            await asyncio.sleep(lease_ttl)  # let the split settle
            held = {s: (await redis.get(keys.lease(s)) or b"").decode() for s in SOURCES}
            victim = max(("wa", "wb"), key=lambda w: list(held.values()).count(w))
            moved = [s for s, w in held.items() if w == victim]
            survivor = "wb" if victim == "wa" else "wa"
            procs[victim].stop(signal.SIGKILL)
            killed = time.time()

            def first(source: str, name: str) -> float | None:
                times = [
                    t
                    for t, e in rec_events(rec, source, name)
                    if t > killed and e.worker == survivor
                ]
                return min(times) if times else None

            await rec.wait(lambda: all(first(s, "finished") for s in moved), within=60)
            stop.set()
    finally:
        for proc in procs.values():
            proc.stop(signal.SIGKILL)
        await redis.aclose()
    started = max(first(s, "started") or 0 for s in moved) - killed
    finished = max(first(s, "finished") or 0 for s in moved) - killed
    return started, finished


def summary(values: list[float]) -> str:
    if not values:
        return "n/a"
    q = statistics.quantiles(values, n=10) if len(values) >= 2 else values * 9
    return f"{statistics.median(values):7.0f} {q[-1]:7.0f} {len(values):6d}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lease-ttl", type=float, default=5.0)
    args = parser.parse_args()
    server = RedisServer().start()
    try:
        alone = await latencies(server.url, "bench1", ["cam-a"], args.seconds)
        shared = await latencies(server.url, "bench3", SOURCES, args.seconds)
        print(f"\nFirst-chunk latency (ms), CPU engine, {args.seconds:g} s per setup")
        print(f"{'setup':24} {'median':>7} {'p90':>7} {'cycles':>6}")
        print(f"{'1 source (baseline)':24} {summary(alone['cam-a'])}")
        for name in SOURCES:
            print(f"{'3 sources: ' + name:24} {summary(shared[name])}")
        medians = [statistics.median(shared[n]) for n in SOURCES if shared[n]]
        base = statistics.median(alone["cam-a"])
        print(
            f"spread of medians across sources: {max(medians) - min(medians):.0f} ms; "
            f"worst median / baseline: {max(medians) / base:.2f}x"
        )
        runs = [await failover(server.url, f"fail{i}", args.lease_ttl) for i in range(args.runs)]
        print(f"\nFailover after kill -9, LEASE_TTL={args.lease_ttl:g} s, {args.runs} runs (s)")
        print(f"{'':24} {'median':>7} {'max':>7}")
        for label, idx in (("first started", 0), ("first finished", 1)):
            values = [r[idx] for r in runs]
            print(f"{label:24} {statistics.median(values):7.2f} {max(values):7.2f}")
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
