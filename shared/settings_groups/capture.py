"""Capture (producers): frame rates and sizes, reconnects, claims, which sources are allowed."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings_groups import var

RTSP_TRANSPORTS = ("tcp", "udp")
SOURCE_SCHEMES = ("rtsp", "rtsps", "http", "https", "file", "device")  # see shared/urlpolicy.py


@dataclass(frozen=True)
class CaptureSettings:
    """The `capture` group of `Settings`, its variables in the order the docs list them."""

    capture_fps: float = var(
        2.0, "Frames per second the worker samples for inference", "capture", lo=0.1, hi=30
    )
    display_fps: float = var(
        10.0, "Frames per second producers publish and MJPEG viewers get", "capture", lo=1, hi=60
    )
    jpeg_quality: int = var(80, "JPEG quality of published frames", "capture", lo=10, hi=100)
    max_frame_edge: int = var(
        1280,
        "Frames are resized so their longest edge is at most this (pixels)",
        "capture",
        lo=64,
        hi=7680,
    )
    loop_files: bool = var(True, "Video files restart at the end instead of stopping", "capture")
    rtsp_transport: str = var("tcp", "RTSP transport", "capture", choices=RTSP_TRANSPORTS)
    reconnect_delay: float = var(
        1.0,
        "First reconnect delay after a source fails (s), doubled each try",
        "capture",
        lo=0.05,
        hi=60,
    )
    max_reconnect_delay: float = var(30.0, "Longest reconnect delay (s)", "capture", lo=0.1, hi=600)
    max_read_failures: int = var(
        10, "Consecutive failed reads before reconnecting", "capture", lo=1, hi=1000
    )
    stall_timeout: float = var(
        10.0, "Seconds without a frame before a source counts as stalled", "capture", lo=0.5, hi=600
    )
    open_timeout: float = var(
        10.0, "Seconds allowed to open a network source", "capture", lo=0.5, hi=120
    )
    claim_ttl: float = var(
        5.0,
        "Seconds a producer supervisor's claim on a source lives without renewal (takeover time)",
        "capture",
        lo=1,
        hi=300,
    )
    max_sources_per_supervisor: int = var(
        64, "Most sources one producer supervisor captures at once", "capture", lo=1, hi=10_000
    )
    source_schemes: str = var(
        ",".join(SOURCE_SCHEMES),
        "Kinds of source the API and supervisors accept, comma-separated, from: "
        + ", ".join(SOURCE_SCHEMES),
        "capture",
    )
    source_file_roots: str = var(
        "var,media",
        "Folders (comma-separated) whose video files may be sources; others are refused",
        "capture",
    )
    source_allow_private: bool = var(
        True,
        "Network sources may be private addresses (10/8, 192.168/16, fc00::/7 ...): LAN cameras",
        "capture",
    )
    source_allow_loopback: bool = var(
        False,
        "Network sources may be this host (127.0.0.1, ::1, localhost), where Redis and the API run",
        "capture",
    )
