"""Checks on JPEG bytes from outside, before anything decodes them.

OpenCV's `imdecode` fills a truncated JPEG with data from earlier decodes and guesses other
formats from the bytes (PITFALLS.md), so input is checked for JPEG markers and size first.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

JPEG_START = b"\xff\xd8\xff"
JPEG_END = b"\xff\xd9"


class JpegError(ValueError):
    """Bytes that are not an acceptable JPEG; the message says why."""


def check_jpeg(data: bytes, max_bytes: int) -> None:
    """Raise JpegError unless `data` looks like one complete JPEG within `max_bytes`."""
    if len(data) > max_bytes:
        raise JpegError(f"frame of {len(data)} bytes exceeds the limit of {max_bytes}")
    if len(data) < len(JPEG_START) + len(JPEG_END):
        raise JpegError(f"frame of {len(data)} bytes is too short to be a JPEG")
    if not data.startswith(JPEG_START):
        raise JpegError("not a JPEG: missing the FF D8 FF start marker")
    if not data.rstrip(b"\x00").endswith(JPEG_END):
        raise JpegError("truncated JPEG: missing the FF D9 end marker")


def decode_jpeg(data: bytes, max_bytes: int) -> npt.NDArray[np.uint8]:
    """Checked decode of a JPEG into a BGR image; JpegError if it is not one."""
    check_jpeg(data, max_bytes)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise JpegError("JPEG could not be decoded")
    return image  # type: ignore[return-value]


def encode_jpeg(image: npt.NDArray[np.uint8], quality: int) -> bytes:
    """JPEG bytes of a BGR image at `quality` (10-100)."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise JpegError("JPEG encoding failed")
    return bytes(buf)
