"""Motion in a window for the CPU engine: how much moved, where, which way, and camera pans.

Works on small grey copies of the frames with their mean level removed (`shapes`), so a light
switched on is not motion. Three measurements, each for the case it handles best:
- the camera moved: one global shift (phase correlation) explains most of the change;
- one thing moved (three or more frames): its centroid against the median frame;
- otherwise: dense optical flow over the pixels that changed.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Motion:
    """What moved between consecutive frames."""

    fraction: float  # of the picture that changed, averaged over frame pairs (0..1)
    where: str = ""  # "left", "centre", "right" or "everywhere"; "" when nothing moved
    direction: str = ""  # "left", "right", "up", "down"; "" when not measurable
    camera: bool = False  # the whole view shifted: the camera moved (or the scene as one)

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
    track = _foreground_track(shapes) if len(shapes) >= 3 else None
    if track is not None:
        (x0, y0), (x1, y1) = track
        return Motion(fraction, third(x1, width), heading(x1 - x0, y1 - y0))
    union = np.logical_or.reduce([mask for _, mask in pairs])
    where = third(float(np.nonzero(union)[1].mean()), width)
    return Motion(fraction, where, _flow_direction(shapes, pairs))


def _camera_shift(shapes: list[Shape], pairs: list[tuple[int, Mask]]) -> tuple[float, float] | None:
    """The mean global shift per frame, if undoing it removes most of the change."""
    height, width = shapes[0].shape
    window = cv2.createHanningWindow((width, height), cv2.CV_32F)
    dx = dy = 0.0
    for i, mask in pairs:
        # Copies: with a window, phaseCorrelate multiplies its inputs in place (OpenCV 4.14).
        (sx, sy), _ = cv2.phaseCorrelate(shapes[i].copy(), shapes[i + 1].copy(), window)
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


def _foreground_track(
    shapes: list[Shape],
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Centroids of what differs from the median frame, in the first and last frames.

    The median of three or more frames is the background wherever something only passes
    through, so this follows an object even when it jumps further than its own size.
    """
    background = np.median(np.stack(shapes), axis=0)
    centres = []
    for shape in (shapes[0], shapes[-1]):
        ys, xs = np.nonzero(np.abs(shape - background) > MOTION_PIXEL_DIFF)
        if len(xs) < MOTION_MIN_FRACTION * shape.size:
            return None
        centres.append((float(xs.mean()), float(ys.mean())))
    return centres[0], centres[1]


def _flow_direction(shapes: list[Shape], pairs: list[tuple[int, Mask]]) -> str:
    """Mean dense optical flow over the moving pixels, across the frame pairs."""
    dx = dy = 0.0
    for i, mask in pairs:
        a, b = (np.clip(shapes[j] + 128, 0, 255).astype(np.uint8) for j in (i, i + 1))
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 21, 3, 5, 1.2, 0)  # type: ignore[call-overload]
        dx += float(flow[..., 0][mask].mean())
        dy += float(flow[..., 1][mask].mean())
    return heading(dx / len(pairs), dy / len(pairs))


def heading(dx: float, dy: float) -> str:
    """'left', 'right', 'up' or 'down' for a shift in pixels; '' when too small to tell."""
    if max(abs(dx), abs(dy)) < MIN_SHIFT:
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
