"""Fan-out: how many viewers one API process (and two) serves, and at what latency.

Starts a private redis-server and `lookout api` (`--workers 2` for two processes) as real
processes, opens N SSE, MJPEG or PCM viewers from a separate client process
(bench/fanout_client.py, optionally pinned with taskset), publishes text chunks, frames or
speech chunks at `--rate` per second for `--seconds`, and prints per run

- delivered: messages received by all viewers / (viewers x messages published);
- p50/p99 publish→receive (ms) at the viewers, and at the floor: one direct Redis reader
  in the client process, measured in the same run;
- API CPU (% of one core, all its processes) and RSS, also per 1,000 viewers.

    .venv/bin/python bench/fanout.py --kind sse --viewers 1000,2000,5000 --procs 1,2
    .venv/bin/python bench/fanout.py --kind mjpeg --viewers 500,2000 --rate 10
    .venv/bin/python bench/fanout.py --plot docs/fanout  # PNGs and a table of the results

Results are appended to test-artifacts/fanout.json (one object per run) for --plot.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402

from bench.fanout_probe import gc_passes, profiler, run_queue_wait, tree_cpu, tree_rss  # noqa: E402
from shared.bus import SourcePublisher  # noqa: E402
from shared.keys import Keys  # noqa: E402
from shared.messages import AudioChunk, TextChunk  # noqa: E402
from shared.records import FrameRecord  # noqa: E402
from shared.sources import SourceRegistry  # noqa: E402
from tests.helpers import REPO, LookoutProcess, RedisServer, free_port, wait_for_port  # noqa: E402

RESULTS = REPO / "test-artifacts" / "fanout.json"
CLIENT = Path(__file__).resolve().parent / "fanout_client.py"
PCM_CHUNK = 9600  # 100 ms of 48 kHz s16le; the client reads the publish time in its first 8 bytes
SOURCE = "cam"
SETTLE_S = 1.0  # no new message at any viewer for this long: nothing more is in flight
DELIVERY_DEADLINE_S = 60.0


def test_jpegs(count: int = 10) -> list[bytes]:
    """640x360 JPEGs of a textured scene (about 40-60 kB each at quality 80)."""
    rng = np.random.default_rng(7)
    base = cv2.GaussianBlur(rng.integers(0, 256, (360, 640, 3), dtype=np.uint8), (5, 5), 0)
    out = []
    for i in range(count):
        image = np.roll(base, i * 8, axis=1)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
        assert ok
        out.append(bytes(buf))
    return out


async def publish(kind: str, redis_url: str, keys: Keys, rate: float, seconds: float) -> int:
    """Publish at `rate`/s for `seconds` on an absolute schedule; returns how many."""
    redis = aioredis.Redis.from_url(redis_url)
    pub = SourcePublisher(redis, keys, SOURCE)
    jpegs = test_jpegs() if kind == "mjpeg" else []
    loop = asyncio.get_running_loop()
    start, total = loop.time(), int(rate * seconds)
    try:
        for seq in range(total):
            delay = start + seq / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.time()
            if kind == "sse":
                await pub.text(TextChunk(source=SOURCE, cycle="b", seq=seq, text="a red car "))
            elif kind == "pcm":
                pcm = struct.pack("<d", now) + b"LOOKOUT!" + bytes(PCM_CHUNK - 16)
                await pub.audio(AudioChunk(source=SOURCE, cycle="b", seq=seq, pcm=pcm))
            else:
                frame = FrameRecord(
                    seq=seq + 1, ts=now, width=640, height=360, jpeg=jpegs[seq % 10]
                )
                await redis.xadd(keys.frames(SOURCE), frame.to_fields(), maxlen=50)  # type: ignore[arg-type]
    finally:
        await redis.aclose()
    return total


def wait_delivered(client: subprocess.Popen[str], expected: int) -> None:
    """Until the viewers have received `expected` messages, or their count stops moving for
    SETTLE_S (MJPEG is latest-wins: a viewer still sending skips a frame, so some never come)."""
    assert client.stdin is not None and client.stdout is not None
    last, still_since, deadline = -1, time.monotonic(), time.monotonic() + DELIVERY_DEADLINE_S
    while time.monotonic() < deadline:
        client.stdin.write("count\n")
        client.stdin.flush()
        received = int(client.stdout.readline())
        if received >= expected:
            return
        if received != last:
            last, still_since = received, time.monotonic()
        elif time.monotonic() - still_since >= SETTLE_S:
            return
        time.sleep(0.05)


def run_once(args: argparse.Namespace, redis: RedisServer, viewers: int, procs: int) -> dict:
    prefix = f"bench{os.getpid()}n{viewers}p{procs}"
    keys = Keys(prefix)
    port = free_port()
    env = {
        "REDIS_URL": redis.url,
        "KEY_PREFIX": prefix,
        "LOG_LEVEL": "WARNING",
        "ENABLE_TTS": "true",
    }
    extra = ["--workers", str(procs)] if procs > 1 else []
    api = LookoutProcess(["api", "--port", str(port), *extra], env, "bench-api")
    client: subprocess.Popen[str] | None = None
    try:
        wait_for_port(port, timeout=60)
        asyncio.run(_register(redis.url, keys))
        pin = ["taskset", "-c", args.client_cpus] if args.client_cpus else []
        client = subprocess.Popen(
            [*pin, sys.executable, str(CLIENT), "--kind", args.kind, "--port", str(port)]
            + ["--viewers", str(viewers), "--redis-url", redis.url, "--key-prefix", prefix],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert client.stdout is not None and client.stdin is not None
        ready = client.stdout.readline().split()
        connected = int(ready[1]) if ready[:1] == ["ready"] else 0
        time.sleep(1.0)  # every relay subscribed, the connect burst's garbage collected
        proc, client_proc = psutil.Process(api.proc.pid), psutil.Process(client.pid)
        cpu0, t0, client0 = tree_cpu(proc), time.monotonic(), tree_cpu(client_proc)
        # With several processes /metrics answers from whichever accepts: GC only for one.
        gc_port = port if procs == 1 else 0
        wait0, gc0 = run_queue_wait(proc), gc_passes(gc_port)
        spy = profiler(args, proc, viewers, procs)
        sent = asyncio.run(publish(args.kind, redis.url, keys, args.rate, args.seconds))
        wait_delivered(client, viewers * sent)
        cpu1, t1, client1 = tree_cpu(proc), time.monotonic(), tree_cpu(client_proc)
        wait1, gc1 = run_queue_wait(proc), gc_passes(gc_port)
        rss = tree_rss(proc)
        if spy is not None:
            spy.wait(30)
        client.stdin.write("stop\n")
        client.stdin.flush()
        result = json.loads(client.stdout.readline())
    finally:
        if client is not None:
            client.kill()
            client.wait()
        api.stop()
    cpu = 100 * (cpu1 - cpu0) / (t1 - t0)
    v = result["viewers"]
    return {
        "kind": args.kind,
        "procs": procs,
        "viewers": viewers,
        "connected": connected,
        "rate": args.rate,
        "sent": sent,
        "delivered": v["received"] / max(1, viewers * sent),
        "min_per_viewer_per_s": v["min_per_viewer"] / args.seconds,
        "p50_ms": v["p50_ms"],
        "p99_ms": v["p99_ms"],
        "floor_p50_ms": result["floor"]["p50_ms"],
        "floor_p99_ms": result["floor"]["p99_ms"],
        "cpu_pct": round(cpu, 1),
        "cpu_us_per_delivery": round((cpu1 - cpu0) * 1e6 / max(1, v["received"]), 2),
        "cpu_pct_per_1000": round(cpu * 1000 / viewers, 1),
        "rss_mb": round(rss / 2**20, 1),
        "rss_mb_per_1000": round(rss / 2**20 * 1000 / viewers, 1),
        "api_waiting_for_cpu_pct": round(100 * (wait1 - wait0) / (t1 - t0), 1),
        "client_cpu_pct": round(100 * (client1 - client0) / (t1 - t0), 1),
        "gc_full_passes": gc1.get("count2", 0) - gc0.get("count2", 0) if gc1 else None,
        "gc_full_ms": round((gc1.get("sum2", 0) - gc0.get("sum2", 0)) * 1000, 1) if gc1 else None,
        "gc_all_ms": round(
            sum(gc1.get(f"sum{g}", 0) - gc0.get(f"sum{g}", 0) for g in "012") * 1000, 1
        )
        if gc1
        else None,
        "label": args.label,
        "load_before": os.getloadavg()[0],
    }


async def _register(redis_url: str, keys: Keys) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    await SourceRegistry(redis, keys, "describe").register(SOURCE, "bench")
    await redis.aclose()


def report(row: dict) -> None:
    print(
        f"{row['kind']:<6}{row['procs']:>2}p{row['viewers']:>7}  delivered "
        f"{row['delivered'] * 100:6.2f}%  min/viewer {row['min_per_viewer_per_s']:5.2f}/s  "
        f"p50 {row['p50_ms']} p99 {row['p99_ms']} ms (floor {row['floor_p50_ms']}/"
        f"{row['floor_p99_ms']})  CPU {row['cpu_pct']}% ({row['cpu_pct_per_1000']}%/1k)  "
        f"RSS {row['rss_mb']} MB  API waited for a CPU {row['api_waiting_for_cpu_pct']}%  "
        f"client CPU {row['client_cpu_pct']}%  GC full {row['gc_full_passes']} "
        f"({row['gc_full_ms']} ms), all {row['gc_all_ms']} ms  "
        f"load {row['load_before']:.2f}",
        flush=True,
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--kind", choices=["sse", "mjpeg", "pcm"], default="sse")
    p.add_argument("--viewers", default="1000", help="comma-separated viewer counts")
    p.add_argument("--procs", default="1", help="comma-separated API process counts")
    p.add_argument("--rate", type=float, default=10.0, help="messages (frames) per second")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--client-cpus", default="", help="taskset CPU list for the client")
    p.add_argument("--label", default="", help="stored with the results (e.g. before/after)")
    p.add_argument("--profile", metavar="PREFIX", help="py-spy the API into PREFIX-*.txt")
    p.add_argument("--plot", metavar="PREFIX", help="only draw PREFIX-*.png from the results")
    p.add_argument("--results", type=Path, default=RESULTS, help="JSON lines appended or plotted")
    args = p.parse_args()
    if args.plot:
        from bench.fanout_plot import plot, table

        plot(args.results, args.plot)
        print(table(args.results))
        return 0
    redis = RedisServer().start()
    args.results.parent.mkdir(exist_ok=True)
    try:
        for procs in [int(x) for x in args.procs.split(",")]:
            for viewers in [int(x) for x in args.viewers.split(",")]:
                row = run_once(args, redis, viewers, procs)
                report(row)
                with args.results.open("a") as out:
                    out.write(json.dumps(row) + "\n")
    finally:
        redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
