"""How long the CPU engine takes for one window, on one core.

    .venv/bin/python bench/cpu_engine.py [--runs 15]

Prints a table of medians: the whole window (4 frames, 640x360, text only), its parts, and
espeak-ng per sentence. The baseline is HOG on the full 640x360 frame, measured in the same
run, so the ratio shows what downscaling for HOG buys.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import skimage.data

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.settings import Settings  # noqa: E402
from worker.engines.base import EngineRequest, WindowFrame  # noqa: E402
from worker.engines.cpu import CpuEngine  # noqa: E402
from worker.engines.cpu_analysis import Detectors, _shrink, colour_shares  # noqa: E402
from worker.engines.cpu_speech import speak  # noqa: E402

Image = npt.NDArray[np.uint8]


def photo_window(shift: int, count: int = 4) -> list[Image]:
    """The astronaut photo in a 640x360 frame, moved `shift` pixels right each frame."""
    rgb = skimage.data.astronaut()  # type: ignore[no-untyped-call]
    face = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), (360, 360))
    frames = []
    for n in range(count):
        frame = np.full((360, 640, 3), 90, np.uint8)
        x = 100 + n * shift
        frame[:, x : x + 360] = face
        frames.append(frame)
    return frames


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm up: first calls allocate OpenCV buffers
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    cv2.setNumThreads(1)
    engine = CpuEngine(Settings())
    engine.load()
    detectors = Detectors()
    still, panning = photo_window(0), photo_window(12)
    large = [np.asarray(cv2.resize(f, (1280, 720)), np.uint8) for f in photo_window(6, count=8)]
    last = still[-1]
    full_hog = cv2.HOGDescriptor()
    full_hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())  # type: ignore[attr-defined]

    def window(frames: list[Image]) -> Callable[[], object]:
        framed = [WindowFrame(seq=n, ts=float(n), image=f) for n, f in enumerate(frames)]
        req = EngineRequest(source="bench", frames=framed, instruction="Describe the video.")
        return lambda: list(engine.stream(req, threading.Event()))

    baseline = median_ms(
        lambda: full_hog.detectMultiScale(last, winStride=(8, 8), padding=(8, 8), scale=1.05),
        args.runs,
    )
    rows = [
        ("window, still photo (4 frames, text)", median_ms(window(still), args.runs)),
        ("window, panning photo (4 frames, text)", median_ms(window(panning), args.runs)),
        ("window, 8 frames of 1280x720 (text)", median_ms(window(large), args.runs)),
        ("  faces: Haar on the last frame", median_ms(lambda: detectors.faces(last), args.runs)),
        ("  people: HOG at 512 wide", median_ms(lambda: detectors.people(last), args.runs)),
        ("  colours: 64x36 names", median_ms(lambda: colour_shares(last), args.runs)),
        ("  downscale 640 -> 160", median_ms(lambda: _shrink(last, 160), args.runs)),
        ("baseline: HOG at full 640x360", baseline),
        ("espeak-ng, one 8-word sentence", median_ms(lambda: speak(SENTENCE, "en"), 5)),
    ]
    print(f"CPU engine, one core, median of {args.runs} runs (opencv {cv2.__version__})")
    print(f"| {'what':<42} | {'ms':>8} | {'x baseline':>10} |")
    print(f"|{'-' * 44}|{'-' * 10}|{'-' * 12}|")
    for name, ms in rows:
        print(f"| {name:<42} | {ms:8.1f} | {ms / baseline:10.2f} |")
    return 0


SENTENCE = "The picture is mostly black, with some red."

if __name__ == "__main__":
    raise SystemExit(main())
