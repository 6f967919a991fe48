"""A reader of HTTP multipart MJPEG streams (`multipart/x-mixed-replace`), as phone camera apps
and older IP cameras serve them.

Our own small parser rather than OpenCV's FFmpeg backend: every part is checked with
`shared.jpeg` before decoding (a truncated part must not become a frame patched from an
earlier one), and a camera cannot hold a reader. The HTTP side is httpx
(`producers.camera_http`: Digest or Basic from the URL's credentials, redirects checked by
the source policy); its body is streamed into the parser. A socket timeout alone would not
bound a read: a server trickling one byte at a time resets it forever. So a `Watchdog`
(`producers.deadline`) cuts the connection at an overall deadline (OPEN_TIMEOUT for
connecting and the response headers, STALL_TIMEOUT for each part), parts are bounded by
MAX_FRAME_BYTES, and `interrupt()` cuts it from any thread, so an abandoned reader's thread
returns at once.

Besides `multipart/x-mixed-replace`, a response of type `application/octet-stream` (or none)
is read when its body starts with a boundary line: ffmpeg's own HTTP server sends its
`mpjpeg` so. Opening errors are one message whatever went wrong (refused, timed out, not
HTTP, not MJPEG), so they reveal nothing about the ports of other hosts; the log has the
details.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx

from producers.camera_http import AuthError, RedirectRefused, camera_client, open_stream
from producers.deadline import Watchdog
from producers.readers import EndOfStream, Image, ReaderConfig, SourceOpenError
from shared.jpeg import JpegError, decode_jpeg
from shared.source_urls import redact_url
from shared.urlpolicy import CheckedSource

log = logging.getLogger(__name__)

MAX_HEADER_LINE = 4096
MAX_PART_HEADERS = 32
SNIFFED_TYPES = ("application/octet-stream", "")  # the boundary is read from the body
# What a broken or cut connection raises while the body streams.
STREAM_ERRORS = (httpx.HTTPError, httpx.StreamError, OSError, ValueError)


class BodyReader:
    """`readline()` and `read()` over the chunks of a streamed body, as the parser reads."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()

    def readline(self, limit: int) -> bytes:
        """The next line with its newline, at most `limit` bytes; b"" at the end."""
        searched = 0
        while True:
            end = self._buffer.find(b"\n", searched, limit)
            if end >= 0:
                return self._take(end + 1)
            if len(self._buffer) >= limit:
                return self._take(limit)
            searched = len(self._buffer)
            if not self._fill():
                return self._take(len(self._buffer))

    def read(self, size: int) -> bytes:
        """`size` bytes, fewer only at the end of the body."""
        while len(self._buffer) < size and self._fill():
            pass
        return self._take(min(size, len(self._buffer)))

    def _fill(self) -> bool:
        chunk = next(self._chunks, None)
        if chunk is None:
            return False
        self._buffer += chunk
        return True

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


class MjpegReader:
    """Reads JPEG parts one by one from an open multipart HTTP response (blocking)."""

    eof = False
    frame_interval = 0.0  # a live source: frames come as fast as the server sends them
    last_jpeg: bytes | None = None  # the bytes of the frame read() returned last

    def __init__(self, url: str, config: ReaderConfig, checked: CheckedSource | None) -> None:
        self._config = config
        self._shown = redact_url(url)
        self._watchdog = Watchdog("mjpeg")
        self._client = camera_client()
        self._resp: httpx.Response | None = None
        self._in_headers = False  # True once the boundary line of the next part was consumed
        try:
            self._watchdog.arm(config.open_timeout)
            self._resp = open_stream(
                self._client, url, checked, config.policy, self._watchdog, config.read_timeout
            )
            self._body = BodyReader(self._resp.iter_raw())
            self._boundary = self._check_response(self._resp)
            self._watchdog.disarm()
        except (AuthError, RedirectRefused) as exc:
            self.close()
            separator = ":" if isinstance(exc, AuthError) else ""
            raise SourceOpenError(f"{self._shown}{separator} {exc}", permanent=True) from None
        except (*STREAM_ERRORS, httpx.InvalidURL) as exc:
            self.close()
            log.info("%s: %s", self._shown, exc)
            raise SourceOpenError(
                f"cannot open MJPEG stream {self._shown!r} "
                "(unreachable, refused, timed out, or not an MJPEG stream)"
            ) from None

    def _check_response(self, resp: httpx.Response) -> bytes:
        if resp.status_code != 200:
            raise OSError(f"HTTP {resp.status_code} {resp.reason_phrase}")
        content_type: str = resp.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() in SNIFFED_TYPES:
            return self._sniff_boundary()
        if not content_type.lower().startswith("multipart/"):
            raise OSError(f"Content-Type {content_type!r}, expected multipart/x-mixed-replace")
        for param in content_type.split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.lower() == "boundary" and value:
                return value.strip('"').lstrip("-").encode()
        raise OSError("multipart Content-Type without a boundary")

    def _sniff_boundary(self) -> bytes:
        """The boundary of a body that starts with one (`--ffmpeg`), consumed as a part's."""
        for _ in range(3):  # a blank line or two may come first
            line = self._body.readline(MAX_HEADER_LINE).strip()
            if line.startswith(b"--") and len(line) > 2:
                self._in_headers = True
                return line[2:]
            if line:
                break
        raise OSError("neither multipart/x-mixed-replace nor a body starting with a boundary")

    def read(self) -> Image | None:
        """The next frame; None for a part that is not a valid JPEG; EndOfStream when the
        server closed the stream or sent no whole part within the read timeout."""
        self._watchdog.arm(self._config.read_timeout)
        try:
            data = self._next_part()
        except (EndOfStream, *STREAM_ERRORS) as exc:
            if self._watchdog.expired or isinstance(exc, httpx.TimeoutException):
                raise EndOfStream("no whole MJPEG part within the read timeout") from None
            if isinstance(exc, EndOfStream):
                raise
            raise EndOfStream(f"MJPEG stream broke: {exc}") from None
        finally:
            self._watchdog.disarm()
        try:
            image = decode_jpeg(data, self._config.max_bytes, max_pixels=self._config.max_pixels)
            self.last_jpeg = data
            return image
        except JpegError as exc:
            log.debug("skipped an MJPEG part: %s", exc)
            return None

    def _line(self) -> bytes:
        line = self._body.readline(MAX_HEADER_LINE)
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
        limit = self._config.max_bytes
        if length is not None:
            if length > limit:
                raise EndOfStream(f"MJPEG part of {length} bytes exceeds {limit}")
            data = self._body.read(length)
            if len(data) < length:
                raise EndOfStream("the MJPEG server closed the stream mid-frame")
            return data
        return self._read_until_boundary(limit)

    def _read_until_boundary(self, limit: int) -> bytes:
        # Without Content-Length the part ends at the next boundary line.
        chunks: list[bytes] = []
        size = 0
        while True:
            line = self._body.readline(limit + 1)
            if not line:
                raise EndOfStream("the MJPEG server closed the stream")
            if self._is_boundary(line):
                self._in_headers = True
                return b"".join(chunks).removesuffix(b"\r\n").removesuffix(b"\n")
            chunks.append(line)
            size += len(line)
            if size > limit:
                raise EndOfStream(f"MJPEG part exceeds {limit} bytes")

    def interrupt(self) -> None:
        """Make a read blocked in another thread return now (thread-safe)."""
        self._watchdog.cut()

    def close(self) -> None:
        self._watchdog.close()
        if self._resp is not None:
            self._resp.close()
        self._client.close()
