"""Checks on JPEG bytes from outside, before anything decodes them.

OpenCV's `imdecode` fills a truncated JPEG with data from earlier decodes, guesses other
formats from the bytes, and allocates whatever size the frame header claims (a 1 KB JPEG
claiming 32000x32000 takes gigabytes). So input is checked for JPEG markers, byte size and
the pixel count of its SOF header, read here without decoding, before OpenCV sees it.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

JPEG_START = b"\xff\xd8\xff"
JPEG_END = b"\xff\xd9"
PNG_START = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers of every JPEG process (C4 is DHT, C8 reserved, CC is DAC).
SOF_MARKERS = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)
STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7: no length field
SOS = 0xDA
# OpenCV's REDUCED modes decode at 1/2, 1/4 or 1/8 of the size, in the DCT: cheap and small.
_REDUCED = (
    (8, cv2.IMREAD_REDUCED_COLOR_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2),
)


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


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the JPEG's frame header, read without decoding; JpegError if the
    headers before the first scan are malformed or hold no usable frame header."""
    pos = 2  # after FF D8
    while True:
        if pos >= len(data) or data[pos] != 0xFF:
            raise JpegError(f"malformed JPEG: no marker at byte {pos} before the frame header")
        while pos < len(data) and data[pos] == 0xFF:  # fill bytes may pad any marker
            pos += 1
        if pos >= len(data):
            raise JpegError("truncated JPEG: no frame header")
        marker = data[pos]
        pos += 1
        if marker in STANDALONE_MARKERS:
            continue
        if marker == SOS or marker in (0xD8, 0xD9, 0x00):
            raise JpegError(f"malformed JPEG: marker FF {marker:02X} before the frame header")
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2 or pos + length > len(data):
            raise JpegError(f"malformed JPEG: segment FF {marker:02X} of bad length {length}")
        if marker in SOF_MARKERS:
            return _sof_size(data[pos + 2 : pos + length])
        pos += length  # APPn, DQT, DHT, COM, ...: skipped unread


def _sof_size(body: bytes) -> tuple[int, int]:
    # precision (1 byte), height (2), width (2), components (1), then 3 bytes per component
    if len(body) < 6:
        raise JpegError("malformed JPEG: frame header too short")
    height = int.from_bytes(body[1:3], "big")
    width = int.from_bytes(body[3:5], "big")
    if width == 0 or height == 0:  # height 0 defers it to a DNL marker: refused, not guessed
        raise JpegError(f"JPEG frame header gives no size ({width}x{height})")
    return width, height


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; JpegError if it has none."""
    if not data.startswith(PNG_START) or data[12:16] != b"IHDR" or len(data) < 24:
        raise JpegError("malformed PNG: no IHDR header")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def image_header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a JPEG or PNG from its header; None for other formats."""
    if data.startswith(JPEG_START):
        return jpeg_size(data)
    if data.startswith(PNG_START):
        return png_size(data)
    return None


def check_pixels(width: int, height: int, max_pixels: int, what: str = "frame") -> None:
    """JpegError if a `width` x `height` picture exceeds MAX_INGEST_PIXELS (`max_pixels`)."""
    if width * height > max_pixels:
        raise JpegError(
            f"{what} of {width}x{height} pixels exceeds MAX_INGEST_PIXELS={max_pixels}; "
            "refused before decoding"
        )


def decode_jpeg(
    data: bytes, max_bytes: int, *, max_pixels: int, max_edge: int | None = None
) -> npt.NDArray[np.uint8]:
    """Checked decode of a JPEG into a BGR image; JpegError if it is not one or too big.

    With `max_edge`, a picture much larger than that is decoded at 1/2, 1/4 or 1/8 of its
    size (never below `max_edge`), so memory follows the frame Lookout keeps, not the camera.
    """
    check_jpeg(data, max_bytes)
    width, height = jpeg_size(data)
    check_pixels(width, height, max_pixels)
    flags = cv2.IMREAD_COLOR
    if max_edge is not None:
        longest = max(width, height)
        flags = next((f for r, f in _REDUCED if longest // r >= max_edge), cv2.IMREAD_COLOR)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if image is None or image.size == 0:
        raise JpegError("JPEG could not be decoded")
    return image  # type: ignore[return-value]


def encode_jpeg(image: npt.NDArray[np.uint8], quality: int) -> bytes:
    """JPEG bytes of a BGR image at `quality` (10-100)."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise JpegError("JPEG encoding failed")
    return bytes(buf)
