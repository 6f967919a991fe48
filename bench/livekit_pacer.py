"""How steadily the LiveKit bridge's audio pacer feeds a real `rtc.AudioSource`, in real time.

    .venv/bin/python bench/livekit_pacer.py [--seconds 60] [--runs 3]

Per run, two pacers feed their own `rtc.AudioSource` (48 kHz mono, the bridge's 200 ms SDK
queue) for --seconds of wall time on one event loop, each with never-ending speech (a constant
non-zero tone), while an `rtc.AudioStream` on each source's track reads back what a subscriber
would get:
- bridge: `bridge.audio.AudioPacer` (deadlines counted from the start, 80 ms lead);
- baseline: the obvious loop, `capture_frame` then `asyncio.sleep(0.020)`.
Reported, median of --runs: drift (audio sent minus wall time, ms: what a listener ends up behind
or ahead; the bridge's pacer counts the frames it skipped after a stall of the event loop as
sent, since it chose to drop them, and reports those as resyncs), and gaps (10 ms frames of
silence the subscriber got in the middle of speech: the SDK filled an underrun). No LiveKit server is needed:
the track is read in-process, through the SDK's native audio path.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
from livekit import rtc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.audio import AudioPacer, SpeechBuffer, audio_frame  # noqa: E402
from bridge.session import AUDIO_QUEUE_MS  # noqa: E402
from shared.messages import PCM_RATE  # noqa: E402

FRAME = PCM_RATE // 50  # 20 ms


class Endless(SpeechBuffer):
    """Speech that never runs out: a constant tone."""

    def take(self, samples: int) -> bytes:
        return np.full(samples, 1000, np.int16).tobytes()


async def naive(sink: Callable[[rtc.AudioFrame], Awaitable[None]], stop: asyncio.Event) -> int:
    sent = 0
    while not stop.is_set():
        await sink(audio_frame(Endless().take(FRAME)))
        sent += 1
        await asyncio.sleep(0.020)
    return sent


async def listen(stream: rtc.AudioStream, counts: dict[str, int], stop: asyncio.Event) -> None:
    started = False
    async for event in stream:
        if stop.is_set():
            return  # the queue drains into silence once the pacers stop: not a gap
        silent = not np.frombuffer(event.frame.data, np.int16).any()
        if not silent:
            started = True
        elif started:
            counts["gaps"] += 1
        counts["frames"] += 1


async def one_run(seconds: float) -> dict[str, tuple[float, int, int]]:
    results: dict[str, tuple[float, int, int]] = {}
    stop = asyncio.Event()
    sources, streams, listeners, counts = {}, {}, {}, {}
    for name in ("bridge", "baseline"):
        sources[name] = rtc.AudioSource(PCM_RATE, 1, queue_size_ms=AUDIO_QUEUE_MS)
        track = rtc.LocalAudioTrack.create_audio_track(name, sources[name])
        streams[name] = rtc.AudioStream(track, sample_rate=PCM_RATE, num_channels=1)
        counts[name] = {"gaps": 0, "frames": 0}
        listeners[name] = asyncio.create_task(listen(streams[name], counts[name], stop))
    pacer = AudioPacer(Endless(), sources["bridge"].capture_frame)
    start = time.monotonic()
    tasks = [
        asyncio.create_task(pacer.run(stop)),
        asyncio.create_task(naive(sources["baseline"].capture_frame, stop)),
    ]
    await asyncio.sleep(seconds)
    stop.set()
    _, naive_sent = await asyncio.gather(*tasks)
    elapsed = time.monotonic() - start
    # The bridge's skipped frames are its choice after a stall (RESYNC_S): counted as sent.
    sent = {"bridge": pacer.frames - pacer.lead + pacer.skipped, "baseline": naive_sent}
    resyncs = {"bridge": pacer.resyncs, "baseline": 0}
    for name in ("bridge", "baseline"):
        listeners[name].cancel()
        await asyncio.gather(listeners[name], return_exceptions=True)
        await streams[name].aclose()
        await sources[name].aclose()
        drift_ms = (sent[name] * 0.020 - elapsed) * 1000
        results[name] = (drift_ms, counts[name]["gaps"], resyncs[name])
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [await one_run(args.seconds) for _ in range(args.runs)]
    print(f"{args.runs} runs of {args.seconds:.0f} s, medians:")
    print("| pacer | drift ms | silent gaps (10 ms frames) | resyncs after stalls |")
    print("| --- | --- | --- | --- |")
    for name in ("bridge", "baseline"):
        drift = statistics.median(r[name][0] for r in runs)
        gaps = statistics.median(r[name][1] for r in runs)
        resyncs = statistics.median(r[name][2] for r in runs)
        print(f"| {name} | {drift:+.1f} | {gaps:.0f} | {resyncs:.0f} |")


if __name__ == "__main__":
    asyncio.run(main())
