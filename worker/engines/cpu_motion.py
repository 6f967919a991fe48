"""Motion in a window for the CPU engine: how much moved, where, which way, and camera pans.

Works on small grey copies of the frames with their mean level removed (`shapes`), so a light
switched on is not motion. Three measurements, each for the case it handles best:
- the camera moved: one global shift (phase correlation) explains most of the change;
- things moved (three or more frames): what differs from the median frame, in the first
  frame and the last, as one thing or as several separate blobs paired left to right;
- otherwise: dense optical flow over the pixels that changed.
Every average is taken over pixels that exist: a frame pair with no moving pixels adds nothing
(an empty mean is NaN, and NaN has no direction), and `heading` says "" for anything not finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

Shape = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]

MOTION_PIXEL_DIFF = 25  # grey levels a pixel must change by to count as moving
MOTION_MIN_FRACTION = 0.002  # of the picture; below this, sensor noise or JPEG shimmer
LARGE_AREA = 0.15  # of the picture: a pan changes at least this much of a textured scene
WHOLE_FRAME_FRACTION = 0.6  # above this, everything changed (camera shake, flicker)
MIN_SHIFT = 1.0  # pixels at the motion width (160): smaller shifts have no clear direction
PAN_EXPLAINS = 0.5  # a pan: after undoing the shift, at most this share of the change is left
MAX_THINGS = 3  # separate moving regions described one by one; more are "many things"
JOIN_GAP = 5  # pixels at the motion width: blobs closer than this are one thing


@dataclass(frozen=True)
class Thing:
    """One separately moving region: where it ended up, and which way it went."""

    where: str  # "left", "centre" or "right"
    direction: str  # "left", "right", "up", "down", or "" when it did not clearly go anywhere
    x: float = 0.5  # where it ended up, as a share of the width (0: left edge)


@dataclass(frozen=True)
class Motion:
    """What moved between consecutive frames."""

    fraction: float  # of the picture that changed, averaged over frame pairs (0..1)
    where: str = ""  # "left", "centre", "right" or "everywhere"; "" when nothing moved
    direction: str = ""  # "left", "right", "up", "down"; "" when not measurable
    camera: bool = False  # the whole view shifted: the camera moved (or the scene as one)
    things: tuple[Thing, ...] = ()  # two or more separate moving regions, largest first

    @property
    def moving(self) -> bool:
        return self.fraction >= MOTION_MIN_FRACTION


def measure_motion(shapes: list[Shape], cuts: list[bool]) -> Motion:
    """Motion over a window; `cuts[i]` marks frames i and i+1 as different scenes (skipped)."""
    pairs = [
        (i, np.abs(shapes[i] - shapes[i + 1]) > MOTION_PIXEL_DIFF)
        for i in range(len(shapes) - 1)
        if not cuts[i]
    ]
    if not pairs:
        return Motion(fraction=0.0)
    fraction = float(np.mean([mask.mean() for _, mask in pairs]))
    if fraction < MOTION_MIN_FRACTION:
        return Motion(fraction=fraction)
    if fraction >= LARGE_AREA:
        pan = _camera_shift(shapes, pairs)
        if pan is not None:
            return Motion(fraction, "everywhere", heading(*pan), camera=True)
    if fraction >= WHOLE_FRAME_FRACTION:
        return Motion(fraction, "everywhere", _flow_direction(shapes, pairs))
    width = shapes[0].shape[1]
    union = np.logical_or.reduce([mask for _, mask in pairs])
    where = third(float(np.nonzero(union)[1].mean()), width)
    things = _moving_things(shapes, width) if len(shapes) >= 3 else []
    if len(things) == 1:
        return Motion(fraction, things[0].where, things[0].direction)
    if len(things) > 1:
        return Motion(fraction, where, "", things=tuple(things))
    return Motion(fraction, where, _flow_direction(shapes, pairs))


def _camera_shift(shapes: list[Shape], pairs: list[tuple[int, Mask]]) -> tuple[float, float] | None:
    """The mean global shift per frame, if undoing it removes most of the change."""
    height, width = shapes[0].shape
    window = cv2.createHanningWindow((width, height), cv2.CV_32F)
    dx = dy = 0.0
    for i, mask in pairs:
        # Copies: with a window, phaseCorrelate multiplies its inputs in place (OpenCV 4.14).
        (sx, sy), _ = cv2.phaseCorrelate(shapes[i].copy(), shapes[i + 1].copy(), window)
        if not (math.isfinite(sx) and math.isfinite(sy)):
            return None
        # Move frame i+1 back by the shift; compare inside a margin the shift cannot reach.
        back = np.array([[1, 0, -sx], [0, 1, -sy]], dtype=np.float32)
        aligned = cv2.warpAffine(shapes[i + 1], back, (width, height))
        m = int(min(width, height) // 8 + max(abs(sx), abs(sy)))
        inner = np.abs(shapes[i] - aligned)[m:-m, m:-m] > MOTION_PIXEL_DIFF
        if inner.size == 0 or inner.mean() > PAN_EXPLAINS * mask[m:-m, m:-m].mean():
            return None
        dx, dy = dx + sx, dy + sy
    dx, dy = dx / len(pairs), dy / len(pairs)
    return (dx, dy) if max(abs(dx), abs(dy)) >= MIN_SHIFT else None


def _moving_things(shapes: list[Shape], width: int) -> list[Thing]:
    """What moved, followed from the first frame to the last; [] when it cannot be followed.

    The median of three or more frames is the background wherever something only passes
    through, so what differs from it in the first and the last frame is the moving things
    there, even when they jump further than their own size. The same number (2 to
    `MAX_THINGS`) of separate blobs in both frames are that many things, paired left to right;
    otherwise everything that differs is followed as one thing by its centroid.
    """
    background = np.median(np.stack(shapes), axis=0)
    masks = [np.abs(s - background) > MOTION_PIXEL_DIFF for s in (shapes[0], shapes[-1])]
    min_pixels = MOTION_MIN_FRACTION * masks[0].size
    first, last = (_blobs(mask, min_pixels) for mask in masks)
    if len(first) == len(last) and 2 <= len(first) <= MAX_THINGS:
        tracks = list(zip(sorted(first), sorted(last), strict=True))
    else:
        start, end = (_centre(mask, min_pixels) for mask in masks)
        if start is None or end is None:
            return []
        tracks = [(start, end)]
    return [
        Thing(third(x1, width), heading(x1 - x0, y1 - y0), x1 / width)
        for (x0, y0), (x1, y1) in tracks
    ]


def _blobs(mask: Mask, min_pixels: float) -> list[tuple[float, float]]:
    """Centroids (x, y) of the separate regions of `mask` with at least `min_pixels` set."""
    joined = cv2.dilate(mask.astype(np.uint8), np.ones((JOIN_GAP, JOIN_GAP), np.uint8))
    count, labels, _, _ = cv2.connectedComponentsWithStats(joined)
    centres = [_centre(mask & (labels == n), min_pixels) for n in range(1, count)]
    return [c for c in centres if c is not None]


def _centre(mask: Mask, min_pixels: float) -> tuple[float, float] | None:
    """Centroid (x, y) of a mask with at least `min_pixels` set, else None."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0 or len(xs) < min_pixels:
        return None
    return float(xs.mean()), float(ys.mean())


def _flow_direction(shapes: list[Shape], pairs: list[tuple[int, Mask]]) -> str:
    """Mean dense optical flow over the moving pixels of the pairs where something moved."""
    dx = dy = 0.0
    moved = 0
    for i, mask in pairs:
        if not mask.any():
            continue  # no moving pixels: an empty mean would be NaN
        a, b = (np.clip(shapes[j] + 128, 0, 255).astype(np.uint8) for j in (i, i + 1))
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 21, 3, 5, 1.2, 0)  # type: ignore[call-overload]
        dx += float(flow[..., 0][mask].mean())
        dy += float(flow[..., 1][mask].mean())
        moved += 1
    return heading(dx / moved, dy / moved) if moved else ""


def heading(dx: float, dy: float) -> str:
    """'left', 'right', 'up' or 'down' for a shift in pixels; '' when too small to tell.

    Not finite (NaN, inf) is '': `nan < MIN_SHIFT` is False, so NaN would otherwise fall
    through every comparison and come out as "up".
    """
    if not (math.isfinite(dx) and math.isfinite(dy)) or max(abs(dx), abs(dy)) < MIN_SHIFT:
        return ""
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def third(x: float, width: int) -> str:
    """Which third of the picture a horizontal position falls in."""
    if x < width / 3:
        return "left"
    if x > 2 * width / 3:
        return "right"
    return "centre"
