"""How many frames per second one producer process can capture → resize → encode → XADD, on one
core, and how much Redis memory one source's frames stream takes at the default MAXLEN.

    .venv/bin/python bench/producer_throughput.py [--runs 5] [--seconds 3]

Input: H.264 MP4s made by ffmpeg (testsrc2, 30 fps) at 640x360 and 1280x720, read with OpenCV
exactly as the producer does (read and encode in a thread, XADD from the event loop), without
the DISPLAY_FPS pacing. The process is pinned to one core; a private redis-server runs beside
it. Baseline: decoding alone in the same run, so the ratio shows what resize+encode+XADD cost.
Each figure is the median of --runs runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.keys import Keys  # noqa: E402
from shared.publisher import FramePublisher, encode_frame  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.settings_env import load_settings  # noqa: E402
from tests.helpers import RedisServer  # noqa: E402
from tests.media import make_mp4  # noqa: E402

SIZES = [(640, 360), (1280, 720)]


class LoopingClip:
    """cv2.VideoCapture of a file that starts over at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)

    def read(self) -> object:
        ok, frame = self.cap.read()
        if not ok:
            self.cap.release()
            self.cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
            ok, frame = self.cap.read()
        return frame


async def measure(
    clip: Path, seconds: float, stage: str, redis: aioredis.Redis, settings: Settings
) -> float:
    """Frames per second through `stage`: decode, encode (decode+resize+JPEG) or full (+XADD)."""
    reader = LoopingClip(clip)
    publisher = FramePublisher(redis, settings, f"bench-{clip.stem}")
    executor = ThreadPoolExecutor(1)
    loop = asyncio.get_running_loop()

    def step() -> tuple[bytes, int, int] | None:
        frame = reader.read()
        if stage == "decode":
            return None
        return encode_frame(frame, settings.max_frame_edge, settings.jpeg_quality)  # type: ignore[arg-type]

    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        encoded = await loop.run_in_executor(executor, step)
        if stage == "full" and encoded is not None:
            await publisher.publish_encoded(*encoded, time.time())
        count += 1
    elapsed = time.perf_counter() - start
    executor.shutdown()
    reader.cap.release()
    return count / elapsed


async def stream_memory(redis: aioredis.Redis, settings: Settings, clip: Path) -> tuple[int, int]:
    """(entries, bytes) of a frames stream after 3×MAXLEN frames of `clip` were published."""
    source = f"mem-{clip.stem}"
    publisher = FramePublisher(redis, settings, source)
    reader = LoopingClip(clip)
    for _ in range(settings.frames_maxlen * 3):
        jpeg, w, h = encode_frame(reader.read(), settings.max_frame_edge, settings.jpeg_quality)  # type: ignore[arg-type]
        await publisher.publish_encoded(jpeg, w, h, time.time())
    reader.cap.release()
    key = Keys(settings.key_prefix).frames(source)
    return int(await redis.xlen(key)), int(await redis.memory_usage(key, samples=0) or 0)


async def main_async(args: argparse.Namespace, tmp: Path) -> None:
    server = RedisServer().start()
    # Pinned after starting Redis, so redis-server keeps the other cores.
    os.sched_setaffinity(0, {args.core})
    try:
        settings = load_settings({"REDIS_URL": server.url, "KEY_PREFIX": "bench"}, env_file=None)
        redis = aioredis.Redis.from_url(server.url)
        rows = []
        for width, height in SIZES:
            clip = make_mp4(
                tmp / f"{width}x{height}.mp4", seconds=5, width=width, height=height, fps=30
            )
            runs: dict[str, list[float]] = {"decode": [], "encode": [], "full": []}
            for _ in range(args.runs):
                for stage in runs:
                    runs[stage].append(await measure(clip, args.seconds, stage, redis, settings))
            entries, size = await stream_memory(redis, settings, clip)
            med = {stage: statistics.median(values) for stage, values in runs.items()}
            rows.append((f"{width}x{height}", med, entries, size))
        await redis.aclose()
    finally:
        server.stop()
    print(f"\nProducer throughput, one core, median of {args.runs} runs of {args.seconds:.0f}s")
    print(
        f"(JPEG quality {settings.jpeg_quality}, MAX_FRAME_EDGE {settings.max_frame_edge}, "
        f"FRAMES_MAXLEN {settings.frames_maxlen} approximate)\n"
    )
    print(
        "| input | decode only (baseline) fps | + resize + JPEG fps | + XADD (producer) fps "
        "| producer / baseline | stream entries | Redis memory per source |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, med, entries, size in rows:
        print(
            f"| {label} | {med['decode']:.0f} | {med['encode']:.0f} | {med['full']:.0f} "
            f"| {med['full'] / med['decode']:.2f} | {entries} | {size / 1e6:.1f} MB |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--core", type=int, default=0, help="CPU core to pin this process to")
    args = parser.parse_args()
    # OpenCV's own threads would use every core; one core is the question asked.
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory(prefix="lookout-bench-") as tmp:
        asyncio.run(main_async(args, Path(tmp)))


if __name__ == "__main__":
    main()
