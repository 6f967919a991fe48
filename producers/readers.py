"""Blocking frame readers, one per kind of source; the capture loop calls them in a thread.

A reader's `read()` returns a BGR image, None for one bad frame (counted towards
MAX_READ_FAILURES), or raises EndOfStream when the file ended or the connection is gone.
Opening raises SourceOpenError with a message a user can act on, and which never tells a
missing file from an unreadable one or a closed port from one that speaks another protocol
(the details go to the log). With a `SourcePolicy` in the config (the supervisor), the URL
is checked again before opening: files after `Path.resolve()`, hosts after DNS, and the
connection goes to the address that was checked.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from producers.sources import SourceKind, SourceUrl, redact_url
from shared.jpeg import JpegError, check_pixels, image_header_size
from shared.urlpolicy import (
    CheckedSource,
    SourcePolicy,
    SourcePolicyError,
    check_source_url,
    with_address,
)

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]
HEADER_PROBE_BYTES = 65_536  # enough for the headers of a JPEG or PNG file
FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


class SourceOpenError(Exception):
    """The source could not be opened; `permanent` when retrying cannot help (a bad file)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class EndOfStream(Exception):
    """The file ended, or the network stream closed or stalled."""


class FrameReader(Protocol):
    eof: bool  # True when the end of a file was reached (as opposed to a broken stream)
    frame_interval: float  # seconds of media per read() for files; 0 for live sources
    last_jpeg: bytes | None  # the JPEG read() decoded, if the source sent JPEGs (MJPEG)

    def read(self) -> Image | None: ...

    def interrupt(self) -> None:
        """Make a read blocked in another thread return now, if the reader can (thread-safe)."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class ReaderConfig:
    """What a reader needs from the settings and the source's options."""

    fps: float
    rtsp_transport: str
    open_timeout: float
    read_timeout: float
    max_bytes: int
    max_pixels: int  # MAX_INGEST_PIXELS
    policy: SourcePolicy | None = (
        None  # None: not checked (`lookout producer --url`, the operator's)
    )


class _EnvGate:
    """OpenCV reads OPENCV_FFMPEG_CAPTURE_OPTIONS while opening, and the environment is
    process-wide: opens wanting the same value may overlap, a different value waits."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._value: str | None = None
        self._users = 0

    @contextmanager
    def holding(self, value: str) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self._users == 0 or self._value == value)
            if self._value != value:
                os.environ[FFMPEG_OPTIONS_ENV] = value
                self._value = value
            self._users += 1
        try:
            yield
        finally:
            with self._cond:
                self._users -= 1
                self._cond.notify_all()


_env_gate = _EnvGate()


class OpenCvReader:
    """Files, RTSP and local devices through cv2.VideoCapture."""

    def __init__(self, source: SourceUrl, config: ReaderConfig, target: str | int) -> None:
        self.eof = False
        self.frame_interval = 0.0
        self.last_jpeg: bytes | None = None  # OpenCV hands over decoded pictures only
        self._step = 1
        self._pending: Image | None = None
        self._cap = self._open(source, config, target)
        try:
            self._check_size(source, config.max_pixels)
            self._check_first_frame(source)
        except Exception:
            self._cap.release()
            raise
        if source.kind is SourceKind.FILE:
            self._set_file_pacing(config.fps)

    def _open(self, source: SourceUrl, config: ReaderConfig, target: str | int) -> cv2.VideoCapture:
        if source.kind is SourceKind.DEVICE:
            cap = cv2.VideoCapture(int(target))
        elif source.kind is SourceKind.FILE:
            path = Path(str(target))
            check_picture_file(source, path, config.max_pixels)
            cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        else:
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                int(config.open_timeout * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                int(config.read_timeout * 1000),
            ]
            with _env_gate.holding(f"rtsp_transport;{config.rtsp_transport}"):
                cap = cv2.VideoCapture(str(target), cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            if source.kind is SourceKind.FILE:
                raise unusable_file(source)
            raise SourceOpenError(
                f"cannot open {source.kind} {redact_url(source.url)!r} (unreachable, timed out, or not a video)"
            )
        return cap

    def _check_size(self, source: SourceUrl, max_pixels: int) -> None:
        # The container's stream header, known once opened: refuse before decoding a frame.
        width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        try:
            check_pixels(width, height, max_pixels, f"{redact_url(source.url)!r}: picture")
        except JpegError as exc:
            raise SourceOpenError(str(exc), permanent=source.kind is SourceKind.FILE) from None

    def _check_first_frame(self, source: SourceUrl) -> None:
        ok, frame = self._cap.read()
        if not ok or frame is None or frame.size == 0:
            raise SourceOpenError(
                f"{redact_url(source.url)!r} opened but gave no decodable frame (corrupt or truncated?)",
                permanent=source.kind is SourceKind.FILE,
            )
        self._pending = frame  # type: ignore[assignment]

    def _set_file_pacing(self, fps: float) -> None:
        # Play files in real time at no more than `fps`: skip frames rather than slow down.
        native = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if 1.0 <= native <= 240.0:
            self._step = max(1, math.ceil(native / fps - 1e-6))
            self.frame_interval = self._step / native
        else:
            self.frame_interval = 1.0 / fps

    def read(self) -> Image | None:
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        for _ in range(self._step - 1):
            if not self._cap.grab():
                self._check_end()
                return None
        ok, image = self._cap.read()
        if not ok or image is None:
            self._check_end()
            return None
        return image  # type: ignore[return-value]

    def _check_end(self) -> None:
        if self.frame_interval > 0:  # a file: the end is the end, not a failed read
            self.eof = True
            raise EndOfStream("end of file")

    def interrupt(self) -> None:
        pass  # a read in OpenCV's C code cannot be cut short; its own timeouts end it

    def close(self) -> None:
        self._cap.release()


def unusable_file(source: SourceUrl) -> SourceOpenError:
    """The one error for a file that is missing, unreadable or no video: they look alike."""
    return SourceOpenError(
        f"cannot open video file {redact_url(source.url)!r} (missing, unreadable or not a video)",
        permanent=True,
    )


def check_picture_file(source: SourceUrl, path: Path, max_pixels: int) -> None:
    """Refuse a JPEG or PNG file whose header claims more than `max_pixels` (FFmpeg would
    decode it while opening); other files are left to the stream-header check."""
    try:
        with path.open("rb") as file:
            head = file.read(HEADER_PROBE_BYTES)
        size = image_header_size(head)
    except OSError as exc:
        log.info("%s: %s", redact_url(source.url), exc)
        raise unusable_file(source) from None
    except JpegError:
        size = None  # a header too long for the probe: the stream-header check still runs
    if size is not None:
        try:
            check_pixels(*size, max_pixels, f"picture file {redact_url(source.url)!r}")
        except JpegError as exc:
            raise SourceOpenError(str(exc), permanent=True) from None


def open_reader(source: SourceUrl, config: ReaderConfig) -> FrameReader:
    """Open the reader for `source` (blocking; SourceOpenError says why it failed).

    With `config.policy`, the URL is checked first (resolving paths and host names) and the
    reader opens what was checked: the resolved path, or the checked address.
    """
    checked = _check_policy(source, config.policy)
    if source.kind is SourceKind.MJPEG:
        from producers.mjpeg import MjpegReader

        return MjpegReader(source.url, config, checked)
    return OpenCvReader(source, config, _target(source, checked))


def _check_policy(source: SourceUrl, policy: SourcePolicy | None) -> CheckedSource | None:
    if policy is None:
        return None
    try:
        return check_source_url(source.url, policy, resolve=True)
    except SourcePolicyError as exc:
        raise SourceOpenError(str(exc), permanent=True) from None
    except OSError as exc:  # DNS: may work on the next try
        log.info("%s: %s", redact_url(source.url), exc)
        raise SourceOpenError(f"cannot resolve the host of {redact_url(source.url)!r}") from None


def _target(source: SourceUrl, checked: CheckedSource | None) -> str | int:
    if checked is None:
        return source.target
    if source.kind is SourceKind.FILE:
        return checked.path
    if source.kind is SourceKind.RTSP:
        return with_address(source.url, checked.addresses[0])  # no second DNS lookup
    return source.target
