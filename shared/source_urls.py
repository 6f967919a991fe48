"""What a source URL means: its kind (file, RTSP, HTTP MJPEG, device) and per-source options.

The URL alone decides the kind, and every check here runs before anything is opened, so a
typo or an unsupported scheme is a clear error at once instead of a producer that retries
forever. Whether a URL may be opened at all is `shared.urlpolicy`'s question.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from shared.urlpolicy import DEVICE_INDEX, DEVICE_PATH

MAX_URL_CHARS = 2048


class SourceUrlError(ValueError):
    """A source URL Lookout cannot capture from; the message says why and what is accepted."""


class SourceOptionsError(ValueError):
    """A per-source option outside its allowed range."""


class SourceKind(StrEnum):
    FILE = "file"
    RTSP = "rtsp"
    MJPEG = "mjpeg"
    DEVICE = "device"


class SourceOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per-source overrides of the capture settings; None means "use the setting"."""

    loop: bool | None = None  # video files: restart at the end (LOOP_FILES)
    rtsp_transport: Literal["tcp", "udp"] | None = None  # RTSP_TRANSPORT
    max_edge: int | None = None  # MAX_FRAME_EDGE
    fps: float | None = None  # DISPLAY_FPS
    jpeg_quality: int | None = None  # JPEG_QUALITY
    livekit: bool | None = None  # LIVEKIT_SOURCES: bring it to its LiveKit room

    def __post_init__(self) -> None:
        if self.max_edge is not None and not 64 <= self.max_edge <= 7680:
            raise SourceOptionsError(f"max_edge={self.max_edge}: allowed range is 64 to 7680")
        if self.fps is not None and not 0.1 <= self.fps <= 60:
            raise SourceOptionsError(f"fps={self.fps}: allowed range is 0.1 to 60")
        if self.jpeg_quality is not None and not 10 <= self.jpeg_quality <= 100:
            raise SourceOptionsError(
                f"jpeg_quality={self.jpeg_quality}: allowed range is 10 to 100"
            )


@dataclass(frozen=True)
class SourceUrl:
    """A checked source URL: `target` is what the reader opens (a path, URL or device index)."""

    url: str
    kind: SourceKind
    target: str | int


def parse_source_url(url: str) -> SourceUrl:
    """Classify `url` or raise SourceUrlError.

    Accepted: `rtsp://` / `rtsps://` (RTSP), `http://` / `https://` (multipart MJPEG),
    `/dev/videoN` or a bare index `N` (local device), `file://PATH` or a plain path (video file).
    """
    if not url or not url.strip():
        raise SourceUrlError("empty source URL")
    if len(url) > MAX_URL_CHARS:
        raise SourceUrlError(f"source URL of {len(url)} characters exceeds {MAX_URL_CHARS}")
    if any(ord(c) < 32 or c == "\x7f" for c in url) or url != url.strip():
        raise SourceUrlError(f"source URL {url!r} contains whitespace or control characters")
    if match := DEVICE_PATH.fullmatch(url) or DEVICE_INDEX.fullmatch(url):
        return SourceUrl(url, SourceKind.DEVICE, int(match.group(match.re.groups)))
    if "://" not in url:
        return SourceUrl(url, SourceKind.FILE, _file_target(url))
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return SourceUrl(url, SourceKind.FILE, _file_target(parts.path))
    if scheme in ("rtsp", "rtsps", "http", "https"):
        if not parts.hostname:
            raise SourceUrlError(f"source URL {url!r} has no host")
        if any(c.isspace() for c in url):
            raise SourceUrlError(f"source URL {url!r} contains whitespace or control characters")
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise SourceUrlError(f"source URL {url!r}: {exc}") from None
        kind = SourceKind.RTSP if scheme.startswith("rtsp") else SourceKind.MJPEG
        return SourceUrl(url, kind, url)
    raise SourceUrlError(
        f"unsupported scheme {scheme!r} in {url!r}: use rtsp://, http(s):// (MJPEG), "
        "file:// or a path, /dev/videoN or a device index"
    )


def _file_target(path: str) -> str:
    # Nothing is looked up on disk here: the API parses URLs of files on another host.
    if not path:
        raise SourceUrlError("file source without a path")
    return path


def redact_url(url: str) -> str:
    """`url` without a password, for logs and status (camera URLs often carry credentials)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()
