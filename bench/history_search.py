"""How long a history search (`GET /history?q=`) keeps Redis busy, by history length, and how
much memory snapshots add to a source.

    .venv/bin/python bench/history_search.py [--runs 7]

A private redis-server gets one source's history of N commentaries (CPU-engine-like texts of
~120 characters, through the worker's own HistoryWriter), then the search script of
api/history_search.py runs: a word found nowhere (the worst case: every entry in range is
read, up to SCAN_MAX), a word in every 10th entry (a page of 20 found early) and, as the
baseline in the same run, a plain XREVRANGE page of 20 (what `/history` without `q` costs).
Times are medians of --runs runs measured from the client (the script itself blocks Redis
for about that long: Lua runs atomically). Memory: MEMORY USAGE of the history and the
snapshots streams with SNAPSHOT_MAX_BYTES-sized JPEGs of a real camera-like frame.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.history_search import SCAN_MAX, HistorySearch, Range  # noqa: E402
from shared.keys import Keys  # noqa: E402
from shared.records import CommentaryRecord  # noqa: E402
from tests.helpers import RedisServer  # noqa: E402
from worker.engines.base import WindowFrame  # noqa: E402
from worker.snapshots import HistoryWriter, fit_snapshot  # noqa: E402

SIZES = [1_000, 2_000, 10_000]
TEXT = "Something is moving on the left, heading right. The picture is mostly green. Light is dim."


async def fill(redis: aioredis.Redis, keys: Keys, source: str, count: int) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for n in range(count):
            text = TEXT + (" A fox." if n % 10 == 0 else "")
            record = CommentaryRecord(cycle=f"w-{n}", status="finished", text=text, instruction="")
            pipe.xadd(keys.history(source), record.to_fields())  # type: ignore[arg-type]
        await pipe.execute()


async def timed(runs: int, call: object) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def searches(url: str, runs: int) -> None:
    redis = aioredis.Redis.from_url(url)
    keys = Keys("bench")
    search = HistorySearch(redis)
    print(
        "| entries | page of 20 (baseline) ms | q found every 10th ms | q found nowhere ms "
        "| entries scanned |"
    )
    print("|---:|---:|---:|---:|---:|")
    for size in SIZES:
        source = f"s{size}"
        await fill(redis, keys, source, size)
        key = keys.history(source)
        page = await timed(runs, lambda k=key: redis.xrevrange(k, count=20))
        found = await timed(runs, lambda k=key: search.run(k, Range(), ["fox"], 20))
        nowhere = await timed(runs, lambda k=key: search.run(k, Range(), ["unicorn"], 20))
        scanned = min(size, SCAN_MAX)
        print(f"| {size} | {page:.2f} | {found:.2f} | {nowhere:.2f} | {scanned} |")
    await redis.aclose()


async def snapshot_memory(url: str) -> None:
    redis = aioredis.Redis.from_url(url)
    keys = Keys("bench")
    rng = np.random.default_rng(0)
    # A camera-like 640x360 frame: smooth gradients plus sensor noise.
    base = np.linspace(0, 255, 640, dtype=np.float32)[None, :, None].repeat(360, 0).repeat(3, 2)
    noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    frame = WindowFrame(seq=1, ts=1.0, image=noisy)
    writer = HistoryWriter(redis, keys, maxlen=1000)
    for budget in (32768, 8192):
        jpeg = fit_snapshot(frame, budget)
        record = CommentaryRecord(cycle="c", status="finished", text=TEXT, instruction="")
        for _ in range(1000):
            await writer.append(f"m{budget}", record, jpeg)
        history = await redis.memory_usage(keys.history(f"m{budget}")) or 0
        snaps = await redis.memory_usage(keys.snapshots(f"m{budget}")) or 0
        count = await redis.xlen(keys.snapshots(f"m{budget}"))
        print(
            f"SNAPSHOT_MAX_BYTES={budget}: snapshot {len(jpeg)} B, {count} kept, "
            f"history {history / 1e6:.2f} MB, snapshots {snaps / 1e6:.1f} MB"
        )
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    server = RedisServer().start()
    try:
        asyncio.run(searches(server.url, args.runs))
        asyncio.run(snapshot_memory(server.url))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
