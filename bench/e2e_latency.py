"""End-to-end commentary latency: newest frame captured → first text chunk at an SSE client.

Starts a private redis-server, a producer on a generated clip, the CPU worker and the API as
real processes (the same as `lookout up`), reads the source's SSE stream with a real HTTP
client, and for each cycle measures

- worker: the `first_chunk` event's `latency_ms` (newest frame's capture → first chunk
  published, measured by the worker), the baseline;
- client: the SSE client's receive time of the cycle's first `chunk` minus the newest
  frame's capture time from the `started` event (one machine, one clock).

Prints median and p90 of each over `--cycles` cycles and the client/worker ratio.

    .venv/bin/python bench/e2e_latency.py --cycles 30
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e_support import SseReader, make_red_box_clip  # noqa: E402
from tests.helpers import LookoutProcess, RedisServer, free_port, wait_for_port  # noqa: E402


def measure(cycles: int, env_extra: dict[str, str]) -> tuple[list[float], list[float]]:
    redis = RedisServer().start()
    port = free_port()
    env = {"REDIS_URL": redis.url, "SERVER_PORT": str(port), **env_extra}
    clip = make_red_box_clip(Path(tempfile.mkdtemp()) / "clip.mp4", seconds=10)
    procs = [
        LookoutProcess(["api"], env, "api"),
        LookoutProcess(["worker"], env, "worker"),
        LookoutProcess(["producer", "--source", "cam", "--url", str(clip)], env, "producer"),
    ]
    worker_ms: list[float] = []
    client_ms: list[float] = []
    try:
        wait_for_port(port, timeout=30)
        reader = SseReader(f"http://127.0.0.1:{port}/api/sources/cam/events")
        newest: dict[str, float] = {}
        seen_chunk: set[str] = set()
        while len(client_ms) < cycles:
            event = reader.next_matching(lambda e: e.event in ("cycle", "chunk"), timeout=60)
            data, cycle = event.data, event.data.get("cycle", "")
            if event.event == "cycle" and data["event"] == "started" and data["frame_ts"]:
                newest[cycle] = max(data["frame_ts"])
            elif event.event == "cycle" and data["event"] == "first_chunk":
                worker_ms.append(float(data["latency_ms"]))
            elif event.event == "chunk" and cycle in newest and cycle not in seen_chunk:
                seen_chunk.add(cycle)
                client_ms.append((event.received - newest[cycle]) * 1000)
        reader.close()
    finally:
        for proc in reversed(procs):
            proc.stop()
        redis.stop()
    return worker_ms[: len(client_ms)], client_ms


def p90(values: list[float]) -> float:
    return sorted(values)[max(0, int(round(0.9 * len(values))) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cycles", type=int, default=30)
    args = parser.parse_args()
    settings = {"CHANGE_THRESHOLD": "0", "INFERENCE_INTERVAL": "0.5"}
    worker_ms, client_ms = measure(args.cycles, settings)
    print(f"{len(client_ms)} cycles, CPU engine, defaults but {settings}")
    print("| measured at | median ms | p90 ms |")
    print("| --- | --- | --- |")
    print(
        f"| worker: newest frame → first chunk published (baseline) | {statistics.median(worker_ms):.0f} | {p90(worker_ms):.0f} |"
    )
    print(
        f"| SSE client: newest frame → first chunk received | {statistics.median(client_ms):.0f} | {p90(client_ms):.0f} |"
    )
    ratio = statistics.median(client_ms) / statistics.median(worker_ms)
    print(f"client/worker median ratio: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
