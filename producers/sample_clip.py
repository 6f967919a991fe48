"""The sample clip `lookout up` plays when no source is given: made here, not downloaded.

15 s at 10 fps, 640x360, with things the CPU engine can really describe: a red ball moving
over a blue background (motion, colours), the scene going dark and bright again (a light
change), then a cut to a pale yellow scene with a green square moving across (a scene cut).
Drawn with OpenCV and written with its VideoWriter (MPEG-4), so no ffmpeg is needed.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

WIDTH, HEIGHT, FPS = 640, 360, 10
SECONDS_PER_PART = 5
FRAMES = 3 * SECONDS_PER_PART * FPS

Image = npt.NDArray[np.uint8]


def _ball_scene(t: float) -> Image:
    frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    frame[:] = (170, 60, 20)  # BGR: a blue background
    x = int(60 + (WIDTH - 120) * (0.5 - 0.5 * math.cos(t * math.pi / 2.5)))
    y = int(HEIGHT / 2 + 90 * math.sin(t * 2.4))
    cv2.circle(frame, (x, y), 40, (30, 30, 230), -1, cv2.LINE_AA)  # a red ball
    return frame


def _frame(index: int) -> Image:
    t = index / FPS
    part = index // (SECONDS_PER_PART * FPS)
    if part == 0:
        return _ball_scene(t)
    if part == 1:
        # Dark and bright again: brightness follows a cosine from 1 down to 0.08 and back.
        phase = (t - SECONDS_PER_PART) / SECONDS_PER_PART
        level = 0.08 + 0.92 * (0.5 + 0.5 * math.cos(2 * math.pi * phase))
        return (_ball_scene(t).astype(np.float32) * level).astype(np.uint8)
    frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    frame[:] = (170, 230, 240)  # a pale yellow scene
    phase = (t - 2 * SECONDS_PER_PART) / SECONDS_PER_PART
    x = int(40 + (WIDTH - 160) * phase)
    cv2.rectangle(frame, (x, 130), (x + 90, 220), (40, 170, 30), -1)  # a green square
    return frame


def _is_valid(path: Path) -> bool:
    if not path.is_file() or path.stat().st_size == 0:
        return False
    cap = cv2.VideoCapture(str(path))
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        ok, frame = cap.read()
        return ok and frame is not None and count >= FRAMES - 2
    finally:
        cap.release()


def ensure_sample_clip(path: Path) -> Path:
    """Make the sample clip at `path` unless a readable one is already there; returns `path`."""
    if _is_valid(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    writer = cv2.VideoWriter(
        str(partial),
        cv2.VideoWriter.fourcc(*"mp4v"),
        FPS,
        (WIDTH, HEIGHT),
    )
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write an MPEG-4 video to {partial}")
    try:
        for index in range(FRAMES):
            writer.write(_frame(index))
    finally:
        writer.release()
    partial.replace(path)  # atomic: a reader never sees half a clip
    log.info("made the sample clip %s (%d bytes)", path, path.stat().st_size)
    return path
