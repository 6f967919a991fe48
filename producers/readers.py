"""Blocking frame readers, one per kind of source; the capture loop calls them in a thread.

A reader's `read()` returns a BGR image, None for one bad frame (counted towards
MAX_READ_FAILURES), or raises EndOfStream when the file ended or the connection is gone.
Opening raises SourceOpenError with a message a user can act on.
"""

from __future__ import annotations

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

Image = npt.NDArray[np.uint8]
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

    def close(self) -> None: ...


@dataclass(frozen=True)
class ReaderConfig:
    """What a reader needs from the settings and the source's options."""

    fps: float
    rtsp_transport: str
    open_timeout: float
    read_timeout: float
    max_bytes: int


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

    def __init__(self, source: SourceUrl, config: ReaderConfig) -> None:
        self.eof = False
        self.frame_interval = 0.0
        self.last_jpeg: bytes | None = None  # OpenCV hands over decoded pictures only
        self._step = 1
        self._pending: Image | None = None
        self._cap = self._open(source, config)
        try:
            self._check_first_frame(source)
        except Exception:
            self._cap.release()
            raise
        if source.kind is SourceKind.FILE:
            self._set_file_pacing(config.fps)

    def _open(self, source: SourceUrl, config: ReaderConfig) -> cv2.VideoCapture:
        if source.kind is SourceKind.DEVICE:
            cap = cv2.VideoCapture(int(source.target))
        elif source.kind is SourceKind.FILE:
            path = Path(str(source.target))
            if not path.is_file():
                raise SourceOpenError(f"video file {str(path)!r} does not exist", permanent=True)
            if not os.access(path, os.R_OK):
                raise SourceOpenError(f"video file {str(path)!r} is not readable", permanent=True)
            cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        else:
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                int(config.open_timeout * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                int(config.read_timeout * 1000),
            ]
            with _env_gate.holding(f"rtsp_transport;{config.rtsp_transport}"):
                cap = cv2.VideoCapture(str(source.target), cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            what = "video file" if source.kind is SourceKind.FILE else str(source.kind)
            raise SourceOpenError(
                f"cannot open {what} {redact_url(source.url)!r} (unreachable, timed out, or not a video)",
                permanent=source.kind is SourceKind.FILE,
            )
        return cap

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

    def close(self) -> None:
        self._cap.release()


def open_reader(source: SourceUrl, config: ReaderConfig) -> FrameReader:
    """Open the reader for `source` (blocking; SourceOpenError says why it failed)."""
    if source.kind is SourceKind.MJPEG:
        from producers.mjpeg import MjpegReader

        reader = MjpegReader(
            source.url,
            open_timeout=config.open_timeout,
            read_timeout=config.read_timeout,
            max_bytes=config.max_bytes,
        )
        return reader
    return OpenCvReader(source, config)
