"""A reader of HTTP multipart MJPEG streams (`multipart/x-mixed-replace`), as phone camera apps
and older IP cameras serve them.

Our own small parser rather than OpenCV's FFmpeg backend: every part is checked with
`shared.jpeg` before decoding (a truncated part must not become a frame patched from an
earlier one), a stalled server hits a socket timeout we control, and a closed connection is
told apart from one bad part.
"""

from __future__ import annotations

import base64
import http.client
import logging
from urllib.parse import unquote, urlsplit

from producers.readers import EndOfStream, Image, SourceOpenError
from producers.sources import redact_url
from shared.jpeg import JpegError, decode_jpeg

log = logging.getLogger(__name__)

MAX_HEADER_LINE = 4096
MAX_PART_HEADERS = 32


class MjpegReader:
    """Reads JPEG parts one by one from an open multipart HTTP response (blocking)."""

    eof = False
    frame_interval = 0.0  # a live source: frames come as fast as the server sends them
    last_jpeg: bytes | None = None  # the bytes of the frame read() returned last

    def __init__(self, url: str, *, open_timeout: float, read_timeout: float, max_bytes: int):
        self._max_bytes = max_bytes
        parts = urlsplit(url)
        conn_type = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        self._conn = conn_type(parts.hostname or "", parts.port, timeout=open_timeout)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        headers = {"Accept": "multipart/x-mixed-replace"}
        if parts.username is not None:  # http://user:pass@cam/… as IP cameras expect
            token = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
        try:
            self._conn.request("GET", path, headers=headers)
            self._resp = self._conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self._conn.close()
            raise SourceOpenError(
                f"cannot connect to {parts.hostname}:{parts.port}: {exc}"
            ) from None
        self._boundary = self._check_response(redact_url(url))
        if self._conn.sock is not None:
            self._conn.sock.settimeout(read_timeout)
        self._in_headers = False  # True once the boundary line of the next part was consumed

    def _check_response(self, url: str) -> bytes:
        resp = self._resp
        if resp.status != 200:
            self.close()
            raise SourceOpenError(f"{url} answered HTTP {resp.status} {resp.reason}")
        content_type = resp.getheader("Content-Type", "")
        if not content_type.lower().startswith("multipart/"):
            self.close()
            raise SourceOpenError(
                f"{url} is not an MJPEG stream: Content-Type {content_type!r}, "
                "expected multipart/x-mixed-replace"
            )
        for param in content_type.split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.lower() == "boundary" and value:
                return value.strip('"').lstrip("-").encode()
        self.close()
        raise SourceOpenError(f"{url}: multipart Content-Type without a boundary")

    def read(self) -> Image | None:
        """The next frame; None for a part that is not a valid JPEG; EndOfStream when the
        server closed the stream or sent nothing for the read timeout."""
        try:
            data = self._next_part()
        except TimeoutError:
            raise EndOfStream("no data from the MJPEG server within the read timeout") from None
        except (OSError, http.client.HTTPException) as exc:
            raise EndOfStream(f"MJPEG stream broke: {exc}") from None
        try:
            image = decode_jpeg(data, self._max_bytes)
            self.last_jpeg = data
            return image
        except JpegError as exc:
            log.debug("skipped an MJPEG part: %s", exc)
            return None

    def _line(self) -> bytes:
        line = self._resp.readline(MAX_HEADER_LINE)
        if not line:
            raise EndOfStream("the MJPEG server closed the stream")
        return line

    def _is_boundary(self, line: bytes) -> bool:
        # Servers disagree on whether the boundary parameter includes the leading dashes.
        return line.strip().lstrip(b"-") in (self._boundary, self._boundary + b"--")

    def _next_part(self) -> bytes:
        if not self._in_headers:
            while not self._is_boundary(self._line()):
                pass
        self._in_headers = False
        length: int | None = None
        for _ in range(MAX_PART_HEADERS):
            line = self._line()
            if not line.strip():
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length" and value.strip().isdigit():
                length = int(value.strip())
        if length is not None:
            if length > self._max_bytes:
                raise EndOfStream(f"MJPEG part of {length} bytes exceeds {self._max_bytes}")
            data = self._resp.read(length)
            if len(data) < length:
                raise EndOfStream("the MJPEG server closed the stream mid-frame")
            return data
        return self._read_until_boundary()

    def _read_until_boundary(self) -> bytes:
        # Without Content-Length the part ends at the next boundary line.
        chunks: list[bytes] = []
        size = 0
        while True:
            line = self._resp.readline(self._max_bytes + 1)
            if not line:
                raise EndOfStream("the MJPEG server closed the stream")
            if self._is_boundary(line):
                self._in_headers = True
                return b"".join(chunks).removesuffix(b"\r\n").removesuffix(b"\n")
            chunks.append(line)
            size += len(line)
            if size > self._max_bytes:
                raise EndOfStream(f"MJPEG part exceeds {self._max_bytes} bytes")

    def close(self) -> None:
        self._conn.close()
