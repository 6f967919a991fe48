"""Source URLs and options, checked before anything opens; the generated sample clip."""

from __future__ import annotations

from pathlib import Path

import cv2
import msgspec
import numpy as np
import pytest

from producers.sample_clip import FRAMES, ensure_sample_clip
from shared.source_urls import (
    SourceKind,
    SourceOptions,
    SourceOptionsError,
    SourceUrlError,
    parse_source_url,
    redact_url,
)


@pytest.mark.parametrize(
    ("url", "kind", "target"),
    [
        ("rtsp://cam.local:8554/live", SourceKind.RTSP, "rtsp://cam.local:8554/live"),
        ("rtsps://user:pw@10.0.0.2/s", SourceKind.RTSP, "rtsps://user:pw@10.0.0.2/s"),
        ("http://192.168.1.5:8080/video", SourceKind.MJPEG, "http://192.168.1.5:8080/video"),
        ("https://cam.example/mjpg", SourceKind.MJPEG, "https://cam.example/mjpg"),
        ("/dev/video2", SourceKind.DEVICE, 2),
        ("0", SourceKind.DEVICE, 0),
        ("clips/street.mp4", SourceKind.FILE, "clips/street.mp4"),
        ("file:///data/clip.mkv", SourceKind.FILE, "/data/clip.mkv"),
    ],
)
def test_the_url_decides_the_kind(url: str, kind: SourceKind, target: str | int) -> None:
    parsed = parse_source_url(url)
    assert (parsed.kind, parsed.target) == (kind, target)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "empty"),
        ("ftp://host/file.mp4", "unsupported scheme 'ftp'"),
        ("udp://239.0.0.1:1234", "unsupported scheme 'udp'"),
        ("rtsp:///nohost", "has no host"),
        ("http://cam:99999/x", "out of range"),
        ("rtsp://cam/x y", "whitespace or control"),
        (" clip.mp4", "whitespace or control"),
        ("file://", "without a path"),
        ("x" * 3000, "exceeds 2048"),
    ],
)
def test_bad_urls_are_clear_errors(url: str, reason: str) -> None:
    with pytest.raises(SourceUrlError, match=reason):
        parse_source_url(url)


def test_options_are_range_checked_and_unknown_ones_refused() -> None:
    assert msgspec.json.decode(b'{"loop": false, "fps": 5}', type=SourceOptions).fps == 5
    with pytest.raises(SourceOptionsError, match="max_edge=10"):
        SourceOptions(max_edge=10)
    with pytest.raises(msgspec.ValidationError, match="fps=100"):
        msgspec.json.decode(b'{"fps": 100}', type=SourceOptions)
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.json.decode(b'{"lop": true}', type=SourceOptions)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"rtsp_transport": "http"}', type=SourceOptions)


def test_passwords_are_hidden_in_shown_urls() -> None:
    assert redact_url("rtsp://admin:s3cret@cam:554/x") == "rtsp://admin:***@cam:554/x"
    assert redact_url("http://cam/x") == "http://cam/x"


def test_sample_clip_is_small_varied_and_made_once(tmp_path: Path) -> None:
    path = ensure_sample_clip(tmp_path / "sample.mp4")
    assert 10_000 < path.stat().st_size < 2_000_000
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == FRAMES and frames[0].shape == (360, 640, 3)
    red_ball, dark, cut = frames[10], frames[75], frames[130]
    assert red_ball[:, :, 2].max() > 200  # red in the first part
    assert dark.mean() < red_ball.mean() / 3  # the light goes down
    assert cut[:, :, 1].mean() > red_ball[:, :, 1].mean() + 100  # a different scene
    assert np.abs(frames[11].astype(int) - frames[10].astype(int)).mean() > 0.1  # motion
    mtime = path.stat().st_mtime_ns
    assert ensure_sample_clip(path) == path and path.stat().st_mtime_ns == mtime
    path.write_bytes(b"not a video")
    assert ensure_sample_clip(path).stat().st_size > 10_000  # a corrupt clip is remade
