"""Measurements of one window of frames for the CPU engine: plain OpenCV, no model.

Everything here is computed from pixels: motion (frame differences and optical flow), scene
change (first frame against last), brightness and its trend, dominant colour names, people
(HOG pedestrian detector) and faces (frontal Haar cascade). `analyse` returns a `Measures`
that the sentence writer (`cpu_words`) turns into words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from worker.engines.base import EngineError
from worker.engines.cpu_motion import Motion, measure_motion, third

Image = npt.NDArray[np.uint8]
Shape = npt.NDArray[np.float32]

# Motion and scene change are measured on a small grey copy: enough to see where things
# move, and cheap.
MOTION_WIDTH = 160
# A cut (a new scene): the grey structure and the colour histogram both changed a lot.
CUT_MEAN_DIFF = 40.0  # mean abs grey difference, each frame's mean level removed
CUT_HIST_CORRELATION = 0.5  # hue-saturation histograms correlate less than this
COLOUR_SIZE = (64, 36)
HOG_WIDTH = 512  # HOG runs on this width: a person must be ~45% of the frame height
HOG_WINDOW = (64, 128)  # width, height of the default people detector's window
HOG_MIN_WEIGHT = 0.8  # SVM scores below this were false hits on sample photos (helmet, rocket)
FACE_WIDTH = 640
FACE_CASCADE = "haarcascade_frontalface_alt2.xml"  # fewer false hits than _default on coins


@dataclass(frozen=True)
class Measures:
    """Everything the CPU engine knows about one window."""

    frames: int
    motion: Motion
    scene_diff: float  # mean abs grey difference, first frame against last, light level removed
    scene_cut: bool
    brightness: list[float]  # mean grey level per frame (0..255), oldest first
    colours: list[tuple[str, float]]  # colour names with their share of the last frame
    people: int
    faces: int
    face_where: list[str] = field(default_factory=list)

    @property
    def brightness_change(self) -> float:
        return self.brightness[-1] - self.brightness[0]


class Detectors:
    """The Haar face cascade and the HOG people detector, loaded once per engine."""

    def __init__(self) -> None:
        path = cv2.data.haarcascades + FACE_CASCADE  # type: ignore[attr-defined]
        self.face = cv2.CascadeClassifier(path)
        if self.face.empty():
            raise EngineError(f"OpenCV could not load its face cascade {path}")
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())  # type: ignore[attr-defined]

    def people(self, image: Image) -> int:
        """Count standing people with HOG on a copy at most `HOG_WIDTH` wide."""
        small = _shrink(image, HOG_WIDTH)
        win_w, win_h = HOG_WINDOW
        if small.shape[0] < win_h or small.shape[1] < win_w:
            # OpenCV's HOG crashes the process (SIGSEGV) on images smaller than its window;
            # nobody standing fits in such a frame anyway.
            return 0
        boxes, weights = self.hog.detectMultiScale(
            small, winStride=(8, 8), padding=(8, 8), scale=1.05
        )
        if len(boxes) == 0:
            return 0
        scored = [
            (float(w), tuple(int(v) for v in b))
            for b, w in zip(boxes, np.ravel(weights), strict=True)
            if w >= HOG_MIN_WEIGHT
        ]
        return len(_non_max_suppression(scored))  # type: ignore[arg-type]

    def faces(self, image: Image) -> list[tuple[int, int, int, int]]:
        """Frontal faces as (x, y, w, h) in the coordinates of a copy `FACE_WIDTH` wide."""
        grey = cv2.equalizeHist(cv2.cvtColor(_shrink(image, FACE_WIDTH), cv2.COLOR_BGR2GRAY))
        side = max(20, min(grey.shape) // 20)
        found = self.face.detectMultiScale(grey, 1.1, 5, minSize=(side, side))
        return [tuple(int(v) for v in box) for box in found]  # type: ignore[misc]


def analyse(images: Sequence[Image], detectors: Detectors) -> Measures:
    """Measure a window of BGR frames (oldest first). Raises EngineError on unusable input."""
    frames = _normalise(images)
    last = frames[-1]
    greys = [_u8(cv2.cvtColor(_shrink(f, MOTION_WIDTH), cv2.COLOR_BGR2GRAY)) for f in frames]
    # Structure without overall light level: a lamp switched off is not motion or a new scene.
    shapes = [g.astype(np.float32) - float(g.mean()) for g in greys]
    hists = [_hue_histogram(g) for g in frames]
    diff = float(np.abs(shapes[0] - shapes[-1]).mean())
    cuts = [
        _is_cut(float(np.abs(shapes[i] - shapes[i + 1]).mean()), hists[i], hists[i + 1])
        for i in range(len(frames) - 1)
    ]
    faces = detectors.faces(last)
    face_width = _shrink(last, FACE_WIDTH).shape[1]
    return Measures(
        frames=len(frames),
        motion=measure_motion(shapes, cuts),
        scene_diff=diff,
        scene_cut=_is_cut(diff, hists[0], hists[-1]),
        brightness=[float(g.mean()) for g in greys],
        colours=colour_shares(last),
        # A visible face is a person even when HOG (trained on whole bodies) misses them.
        people=max(detectors.people(last), len(faces)),
        faces=len(faces),
        face_where=[third(x + w / 2, face_width) for x, _, w, _ in faces],
    )


def _normalise(images: Sequence[Image]) -> list[Image]:
    if not images:
        raise EngineError("the window has no frames")
    out: list[Image] = []
    for n, image in enumerate(images):
        array = np.asarray(image)
        if array.dtype != np.uint8 or array.ndim not in (2, 3) or min(array.shape[:2]) < 8:
            raise EngineError(
                f"frame {n} is not an 8-bit image of at least 8x8 pixels "
                f"(dtype {array.dtype}, shape {array.shape})"
            )
        if array.ndim == 2:
            array = _u8(cv2.cvtColor(array, cv2.COLOR_GRAY2BGR))
        elif array.shape[2] == 4:
            array = _u8(cv2.cvtColor(array, cv2.COLOR_BGRA2BGR))
        elif array.shape[2] != 3:
            raise EngineError(f"frame {n} has {array.shape[2]} channels; expected BGR")
        if out and array.shape != out[0].shape:
            # A source may change resolution mid-window; compare like with like.
            array = _u8(cv2.resize(array, (out[0].shape[1], out[0].shape[0])))
        out.append(np.ascontiguousarray(array))
    return out


def _non_max_suppression(
    scored: list[tuple[float, tuple[int, int, int, int]]],
) -> list[tuple[int, int, int, int]]:
    """Keep the best box of each overlapping group: HOG often finds one person twice."""
    kept: list[tuple[int, int, int, int]] = []
    for _, box in sorted(scored, reverse=True):
        if all(_overlap(box, other) < 0.4 for other in kept):
            kept.append(box)
    return kept


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over the smaller box (a box inside another counts as the same person)."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / min(a[2] * a[3], b[2] * b[3])


def _shrink(image: Image, width: int) -> Image:
    if image.shape[1] <= width:
        return image
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    return _u8(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))


def _u8(array: object) -> Image:
    """OpenCV's results typed as the 8-bit images they are."""
    return np.asarray(array, dtype=np.uint8)


def _hue_histogram(image: Image) -> Shape:
    """Hue-saturation histogram: what colours are there, whatever the light level."""
    hsv = cv2.cvtColor(_shrink(image, MOTION_WIDTH), cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [12, 4], [0, 180, 0, 256])
    return np.asarray(cv2.normalize(hist, hist).flatten(), dtype=np.float32)


def _is_cut(structure_diff: float, hist_a: Shape, hist_b: Shape) -> bool:
    """A new scene: most of the picture's structure and its colours changed."""
    if structure_diff < CUT_MEAN_DIFF:
        return False
    return float(cv2.compareHist(hist_a, hist_b, cv2.HISTCMP_CORREL)) < CUT_HIST_CORRELATION


# Hue bands in OpenCV's 0..179 hue scale: upper bounds, checked in order (red wraps around).
_HUES = (
    (8, "red"), (20, "orange"), (33, "yellow"), (85, "green"), (100, "cyan"),
    (130, "blue"), (148, "purple"), (170, "pink"), (180, "red"),
)  # fmt: skip


def colour_shares(image: Image) -> list[tuple[str, float]]:
    """Plain colour names of a downscaled copy with their share of pixels, largest first."""
    small = cv2.resize(image, COLOUR_SIZE, interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV).reshape(-1, 3).astype(np.int32)
    names = np.array([_colour_name(int(h), int(s), int(v)) for h, s, v in hsv])
    unique, counts = np.unique(names, return_counts=True)
    shares = [(str(n), float(c) / len(names)) for n, c in zip(unique, counts, strict=True)]
    return sorted(shares, key=lambda item: -item[1])


def _colour_name(h: int, s: int, v: int) -> str:
    if v < 50:
        return "black"
    if s < 45:
        return "white" if v > 190 else "grey"
    if 8 <= h < 20 and v < 150:
        return "brown"  # dark orange reads as brown
    for upper, name in _HUES:
        if h < upper:
            return name
    return "red"
