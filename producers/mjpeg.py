"""A reader of HTTP multipart MJPEG streams (`multipart/x-mixed-replace`), as phone camera apps
and older IP cameras serve them.

Our own small parser rather than OpenCV's FFmpeg backend: every part is checked with
`shared.jpeg` before decoding (a truncated part must not become a frame patched from an
earlier one), and a camera cannot hold a reader. A socket timeout alone would not do: a
server trickling one byte at a time resets it forever. So every socket read is bounded by an
overall deadline (OPEN_TIMEOUT for connecting and the response headers, STALL_TIMEOUT for each
part), parts are bounded by MAX_FRAME_BYTES, and `interrupt()` shuts the socket from any
thread, so an abandoned reader's thread returns at once.

With a `SourcePolicy`, the reader connects only to addresses the policy checked, and checks
every redirect (at most MAX_REDIRECTS) again. Credentials in the URL answer a 401 with Digest
or Basic (`producers.http_auth`), and go to the URL's own origin only. Besides
`multipart/x-mixed-replace`, a response of type `application/octet-stream` (or none) is read
when its body starts with a boundary line: ffmpeg's own HTTP server sends its `mpjpeg` so. Opening errors are one message whatever went
wrong (refused, timed out, not HTTP, not MJPEG), so they reveal nothing about the ports of
other hosts; the log has the details.
"""

from __future__ import annotations

import http.client
import logging
import time
from urllib.parse import urljoin, urlsplit

from producers.http_auth import AuthError, Credentials, authorization, credentials_from_url
from producers.http_socket import DeadlineSocket, connect
from producers.readers import EndOfStream, Image, ReaderConfig, SourceOpenError
from shared.jpeg import JpegError, decode_jpeg
from shared.source_urls import redact_url
from shared.urlpolicy import CheckedSource, SourcePolicyError, check_source_url

log = logging.getLogger(__name__)

MAX_HEADER_LINE = 4096
MAX_PART_HEADERS = 32
MAX_REDIRECTS = 3
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
SNIFFED_TYPES = ("application/octet-stream", "")  # the boundary is read from the body


class MjpegReader:
    """Reads JPEG parts one by one from an open multipart HTTP response (blocking)."""

    eof = False
    frame_interval = 0.0  # a live source: frames come as fast as the server sends them
    last_jpeg: bytes | None = None  # the bytes of the frame read() returned last

    def __init__(self, url: str, config: ReaderConfig, checked: CheckedSource | None) -> None:
        self._config = config
        self._shown = redact_url(url)
        self._sock: DeadlineSocket | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._in_headers = False  # True once the boundary line of the next part was consumed
        try:
            self._resp = self._open(url, checked)
            self._boundary = self._check_response()
        except SourceOpenError:
            self.close()
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.close()
            log.info("%s: %s", self._shown, exc)
            raise SourceOpenError(
                f"cannot open MJPEG stream {self._shown!r} "
                "(unreachable, refused, timed out, or not an MJPEG stream)"
            ) from None

    def _open(self, url: str, checked: CheckedSource | None) -> http.client.HTTPResponse:
        deadline = time.monotonic() + self._config.open_timeout
        creds = credentials_from_url(url)
        for _ in range(MAX_REDIRECTS + 1):
            resp = self._request(url, checked, None, deadline)
            if resp.status == 401 and creds is not None:
                resp = self._authenticate(resp, url, checked, creds, deadline)
            location = resp.getheader("Location")
            if resp.status not in REDIRECT_STATUSES or not location:
                return resp
            self.close()
            target = urljoin(url, location)
            if urlsplit(target)[:2] != urlsplit(url)[:2]:
                creds = None  # credentials go to the host they were written for only
            url, checked = target, self._check_redirect(target)
        raise OSError(f"more than {MAX_REDIRECTS} redirects")

    def _authenticate(
        self,
        refused: http.client.HTTPResponse,
        url: str,
        checked: CheckedSource | None,
        creds: Credentials,
        deadline: float,
    ) -> http.client.HTTPResponse:
        """Answer a 401's challenge on a new connection (cameras often close after a 401)."""
        challenges = refused.msg.get_all("WWW-Authenticate") or []
        self.close()
        try:
            auth = authorization(challenges, creds, "GET", _request_target(url))
        except AuthError as exc:
            raise SourceOpenError(f"{self._shown}: {exc}", permanent=True) from None
        return self._request(url, checked, auth, deadline)

    def _check_redirect(self, url: str) -> CheckedSource | None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise SourceOpenError(f"{self._shown} redirects to a scheme other than http(s)")
        if self._config.policy is None:
            return None
        try:
            return check_source_url(url, self._config.policy, resolve=True)
        except SourcePolicyError as exc:
            raise SourceOpenError(f"{self._shown} redirects: {exc}", permanent=True) from None

    def _request(
        self, url: str, checked: CheckedSource | None, auth: str | None, deadline: float
    ) -> http.client.HTTPResponse:
        parts = urlsplit(url)
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        conn_type = http.client.HTTPSConnection if https else http.client.HTTPConnection
        conn = conn_type(parts.hostname or "", port)  # sets the Host header; we connect
        self._conn = conn
        addresses = checked.addresses if checked is not None else ()
        self._sock = connect(parts.hostname or "", port, addresses, https, deadline)
        self._sock.io.deadline = deadline
        conn.sock = self._sock
        headers = {"Accept": "multipart/x-mixed-replace"}
        if auth is not None:  # the answer to the camera's 401
            headers["Authorization"] = auth
        conn.request("GET", _request_target(url), headers=headers)
        return conn.getresponse()

    def _check_response(self) -> bytes:
        resp = self._resp
        if resp.status != 200:
            raise OSError(f"HTTP {resp.status} {resp.reason}")
        content_type = resp.getheader("Content-Type", "")
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
            line = self._resp.readline(MAX_HEADER_LINE).strip()
            if line.startswith(b"--") and len(line) > 2:
                self._in_headers = True
                return line[2:]
            if line:
                break
        raise OSError("neither multipart/x-mixed-replace nor a body starting with a boundary")

    def read(self) -> Image | None:
        """The next frame; None for a part that is not a valid JPEG; EndOfStream when the
        server closed the stream or sent no whole part within the read timeout."""
        assert self._sock is not None
        self._sock.io.deadline = time.monotonic() + self._config.read_timeout
        try:
            data = self._next_part()
        except TimeoutError:
            raise EndOfStream("no whole MJPEG part within the read timeout") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise EndOfStream(f"MJPEG stream broke: {exc}") from None
        try:
            image = decode_jpeg(data, self._config.max_bytes, max_pixels=self._config.max_pixels)
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
        limit = self._config.max_bytes
        if length is not None:
            if length > limit:
                raise EndOfStream(f"MJPEG part of {length} bytes exceeds {limit}")
            data = self._resp.read(length)
            if len(data) < length:
                raise EndOfStream("the MJPEG server closed the stream mid-frame")
            return data
        return self._read_until_boundary(limit)

    def _read_until_boundary(self, limit: int) -> bytes:
        # Without Content-Length the part ends at the next boundary line.
        chunks: list[bytes] = []
        size = 0
        while True:
            line = self._resp.readline(limit + 1)
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
        if self._sock is not None:
            self._sock.shutdown()

    def close(self) -> None:
        self.interrupt()
        if self._conn is not None:
            self._conn.close()
        if self._sock is not None:
            self._sock.release()


def _request_target(url: str) -> str:
    """The path and query sent in the request line (and in a Digest `uri`)."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
