"""Does deciding watch rules delay the commentary? First-chunk latency with 0, 1 and 5 rules.

    .venv/bin/python bench/alerts_rules.py [--cycles 30] [--runs 2]

Starts a private redis-server and, per rule count, a real `lookout worker` (CPU engine,
CHANGE_THRESHOLD=0 so every window is commented and decided) on a fresh key prefix, feeds
640x360 frames of a drawn person walking over grass at 10 fps, and reads the source's events:
`first_chunk` latency (newest frame's capture to the first chunk) and the time from one
cycle's start to the next (what the rules pass after the commentary adds to a cycle). Rule
counts are measured in turn, `--runs` times; the table gives medians and the ratio to 0 rules.

A second table, in-process and so free of scheduling noise, times the CPU engine on one
window: the commentary (`stream`) and then the rules pass on the same frames (`judge`, which
reuses the commentary's measurements), medians of `--runs * 10` windows.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.bus import Subscription, connect_redis  # noqa: E402
from shared.keys import Keys  # noqa: E402
from shared.messages import CycleFirstChunk, CycleStarted  # noqa: E402
from shared.publisher import FramePublisher  # noqa: E402
from shared.rules import Rule, RuleStore  # noqa: E402
from shared.settings_env import load_settings  # noqa: E402
from tests.helpers import LookoutProcess, RedisServer  # noqa: E402
from tests.test_cpu_engine import field, silhouette  # noqa: E402
from worker.engines.base import EngineRequest, WindowFrame  # noqa: E402
from worker.engines.cpu import CpuEngine  # noqa: E402

CONDITIONS = [
    "a person is visible",
    "something is moving on the left",
    "a face is visible",
    "it is dark",
    "red is visible",
]


async def one_run(
    redis_url: str, rules: int, cycles: int, run: int
) -> tuple[list[float], list[float]]:
    env = {
        "REDIS_URL": redis_url,
        "KEY_PREFIX": f"bench{rules}r{run}",
        "CHANGE_THRESHOLD": "0",
        "INFERENCE_INTERVAL": "0.2",
    }
    settings = load_settings(env, env_file=None)
    keys = Keys(settings.key_prefix)
    redis = connect_redis(redis_url)
    store = RuleStore(redis, keys)
    for n in range(rules):
        await store.put(
            "cam", Rule(id=f"r{n}", name=f"rule {n}", condition=CONDITIONS[n], cooldown_s=0)
        )
    publisher = FramePublisher(redis, settings, "cam")
    latencies: list[float] = []
    starts: list[float] = []
    sub = Subscription(redis_url, [keys.events_channel("cam")])

    async def feed() -> None:
        x = 180
        while True:
            x = 180 + (x - 170) % 280
            await publisher.publish_image(silhouette(field(), x))
            await asyncio.sleep(0.1)

    async def read() -> None:
        async for _, message in sub.messages():
            if isinstance(message, CycleFirstChunk):
                latencies.append(message.latency_ms)
            elif isinstance(message, CycleStarted):
                starts.append(time.monotonic())
            if len(latencies) >= cycles + 2 and len(starts) >= cycles + 3:
                return

    worker = LookoutProcess(["worker", "--worker-id", f"b{rules}"], env, f"bench-worker-{rules}")
    feeding = asyncio.create_task(feed())
    try:
        await asyncio.wait_for(read(), 300)
    finally:
        feeding.cancel()
        worker.stop()
        await redis.aclose()
    periods = [(b - a) * 1000 for a, b in zip(starts[2:], starts[3:], strict=False)]
    return latencies[2:], periods  # the first two cycles warm the engine up


async def main_async(cycles: int, runs: int) -> None:
    server = RedisServer().start()
    results: dict[int, tuple[list[float], list[float]]] = {0: ([], []), 1: ([], []), 5: ([], [])}
    try:
        for run in range(runs):
            for rules in results:
                lat, per = await one_run(server.url, rules, cycles, run)
                results[rules][0].extend(lat)
                results[rules][1].extend(per)
    finally:
        server.stop()
    base_lat = statistics.median(results[0][0])
    base_per = statistics.median(results[0][1])
    print("| rules | first chunk median ms | ratio | cycle start-to-start median ms | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for rules, (lat, per) in results.items():
        ml, mp = statistics.median(lat), statistics.median(per)
        print(f"| {rules} | {ml:.0f} | {ml / base_lat:.2f} | {mp:.0f} | {mp / base_per:.2f} |")


def in_process(windows: int) -> None:
    """Commentary and rules pass of the CPU engine on the same windows, timed apart."""
    import threading

    from shared.settings import Settings

    engine = CpuEngine(Settings(enable_tts=False))
    engine.load()
    times: dict[str, list[float]] = {"commentary": [], "rules 1": [], "rules 5": []}
    for n in range(windows + 2):
        images = [silhouette(field(), 180 + 10 * ((n + i) % 28)) for i in range(2)]
        frames = [WindowFrame(seq=i, ts=float(i), image=img) for i, img in enumerate(images)]
        request = EngineRequest(source="cam", frames=frames, instruction="Describe.")
        started = time.perf_counter()
        list(engine.stream(request, threading.Event()))
        commentary = time.perf_counter()
        engine.judge(request, CONDITIONS[:1])
        one = time.perf_counter()
        engine.judge(request, CONDITIONS)
        five = time.perf_counter()
        if n >= 2:  # warm-up
            times["commentary"].append((commentary - started) * 1000)
            times["rules 1"].append((one - commentary) * 1000)
            times["rules 5"].append((five - one) * 1000)
    base = statistics.median(times["commentary"])
    print("\n| in-process, one window | median ms | ratio to the commentary |")
    print("| --- | --- | --- |")
    for name, values in times.items():
        print(
            f"| {name} | {statistics.median(values):.2f} | {statistics.median(values) / base:.3f} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=30, help="cycles measured per run")
    parser.add_argument("--runs", type=int, default=2, help="rounds over 0, 1 and 5 rules")
    args = parser.parse_args()
    asyncio.run(main_async(args.cycles, args.runs))
    in_process(args.runs * 10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
