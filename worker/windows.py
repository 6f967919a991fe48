"""Sampling, strided windows and change detection for one source (no Redis here).

Producers publish at DISPLAY_FPS; the worker keeps only CAPTURE_FPS of them, decoded once
when sampled. A window is FRAMES_PER_INFERENCE samples taken every FRAME_STRIDE-th sample,
ending at the newest. A scene counts as changed when any window frame differs from the newest
frame of the last commented window by at least CHANGE_THRESHOLD (mean absolute difference of
small grey thumbnails, 0-255 scale), so a cut or steady motion both count, and JPEG noise not.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from shared.jpeg import JpegError, decode_jpeg
from shared.records import FrameRecord
from shared.settings import Settings
from worker.engines.base import WindowFrame

log = logging.getLogger(__name__)

THUMB_SIZE = (64, 36)  # small enough to be cheap, large enough to see a scene cut
FPS_TOLERANCE = 0.9  # accept a frame slightly early so 2.0 fps of a 10 fps feed is not 1.67


@dataclass(frozen=True)
class Sample:
    """A sampled frame: decoded pixels plus the thumbnail change detection compares."""

    frame: WindowFrame
    thumb: npt.NDArray[np.float32]


def thumbnail(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """A small grey float image of `image` for cheap comparisons."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    small = cv2.resize(grey, THUMB_SIZE, interpolation=cv2.INTER_AREA)
    return small.astype(np.float32)


def scene_change(reference: npt.NDArray[np.float32], samples: list[Sample]) -> float:
    """Largest mean absolute pixel difference between `reference` and any of `samples`."""
    return max(float(np.mean(np.abs(s.thumb - reference))) for s in samples)


class SampleBuffer:
    """The sampled frames of one source, newest last, as many as one window spans."""

    def __init__(self, source: str, settings: Settings) -> None:
        self.source = source
        self._period = 1.0 / settings.capture_fps
        self._per_window = settings.frames_per_inference
        self._stride = settings.frame_stride
        self._max_bytes = settings.max_frame_bytes
        self._max_pixels = settings.ingest_pixel_limit
        span = (self._per_window - 1) * self._stride + 1
        self._samples: deque[Sample] = deque(maxlen=span)
        self.last_seq = -1  # newest frame seen (sampled or not)
        self.last_ts = 0.0
        self.newest_arrival = 0.0  # monotonic time the newest sample was taken
        self.rejected = 0  # corrupt frames skipped

    @property
    def span_seconds(self) -> float:
        """Capture time one full window covers."""
        return (self._samples.maxlen or 1) * self._period

    def offer(self, record: FrameRecord) -> bool:
        """Take `record` if it is new and due at CAPTURE_FPS; True if it was sampled.

        A corrupt JPEG is logged and skipped; the next good frame is sampled instead.
        """
        if record.seq <= self.last_seq and record.ts > self.last_ts:
            # The producer restarted (seq went back, time went on): follow it.
            self.last_seq = -1
        if record.seq <= self.last_seq:
            return False
        self.last_seq, self.last_ts = record.seq, record.ts
        if self._samples and record.ts - self.newest_ts < self._period * FPS_TOLERANCE:
            return False
        try:
            image = decode_jpeg(record.jpeg, self._max_bytes, max_pixels=self._max_pixels)
        except JpegError as exc:
            self.rejected += 1
            log.warning("%s: skipped frame %d: %s", self.source, record.seq, exc)
            return False
        frame = WindowFrame(seq=record.seq, ts=record.ts, image=image, jpeg=record.jpeg)
        self._samples.append(Sample(frame=frame, thumb=thumbnail(image)))
        self.newest_arrival = time.monotonic()
        return True

    @property
    def newest_ts(self) -> float:
        return self._samples[-1].frame.ts if self._samples else 0.0

    @property
    def newest_seq(self) -> int:
        return self._samples[-1].frame.seq if self._samples else -1

    def window(self) -> list[Sample]:
        """Up to FRAMES_PER_INFERENCE samples, every FRAME_STRIDE-th, oldest first.

        Early on, with fewer samples than a window spans, the window is shorter.
        """
        picked = list(self._samples)[::-1][:: self._stride][: self._per_window]
        return picked[::-1]


class ChangeDetector:
    """Decides whether a window shows enough change since the last commented one."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._reference: npt.NDArray[np.float32] | None = None

    def change(self, window: list[Sample]) -> float | None:
        """The change score of `window`, or None when nothing was commented yet."""
        if self._reference is None or not window:
            return None
        return scene_change(self._reference, window)

    def commented(self, window: list[Sample]) -> None:
        """Remember the newest frame of a window that was commented on."""
        if window:
            self._reference = window[-1].thumb

    def reset(self) -> None:
        """Forget the reference (a new instruction must comment whatever the scene)."""
        self._reference = None
