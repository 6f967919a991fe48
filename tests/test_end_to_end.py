"""File → producer → Redis → CPU worker → API → HTTP clients, every process real.

Also `lookout up`: the embedded default starts its own Redis when none answers, serves
commentary on the sample clip, and stops every child on Ctrl-C.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from tests.e2e_support import SseEvent, SseReader, make_red_box_clip, mjpeg_parts
from tests.helpers import LookoutProcess, free_port, wait_for_port

COLOUR_WORDS = ("red", "blue")


def _finished(event: SseEvent) -> bool:
    return event.event == "cycle" and event.data["event"] == "finished"


@pytest.fixture
def stack(tmp_path: Path, test_env: dict[str, str]) -> Iterator[tuple[str, dict[str, str]]]:
    """Producer, worker and API as real processes on the test's Redis; yields the API base."""
    clip = make_red_box_clip(tmp_path / "red-box.mp4")
    port = free_port()
    env = {
        **test_env,
        "SERVER_PORT": str(port),
        "INFERENCE_INTERVAL": "0.2",
        "CAPTURE_FPS": "4",
        "CHANGE_THRESHOLD": "0",  # comment on every window; skipping is tested in the worker tests
    }
    procs = [
        LookoutProcess(["api"], env, "api"),
        LookoutProcess(["worker"], env, "worker"),
        LookoutProcess(["producer", "--source", "cam", "--url", str(clip)], env, "producer"),
    ]
    try:
        wait_for_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}", env
    finally:
        # Stop every process first, then assert: one failing must not leave the others running.
        codes = [(proc.stop(), proc) for proc in reversed(procs)]
    for code, proc in codes:
        assert code in (0, -signal.SIGTERM), proc.log()


@pytest.mark.slow
def test_commentary_video_and_instruction_reach_http_clients(
    stack: tuple[str, dict[str, str]],
) -> None:
    base, env = stack
    reader = SseReader(f"{base}/api/sources/cam/events")
    try:
        # 1. Commentary that describes the clip: a red square moving over blue.
        first = reader.next_matching(_finished, timeout=60)
        text = first.data["text"].lower()
        assert any(word in text for word in COLOUR_WORDS), text
        assert "moving" in text, text

        # 2. MJPEG: real JPEG parts showing the red square.
        parts = mjpeg_parts(f"{base}/api/sources/cam/mjpeg", count=3)
        assert len(parts) == 3
        for part in parts:
            image = cv2.imdecode(np.frombuffer(part, np.uint8), cv2.IMREAD_COLOR)
            assert image.shape == (360, 640, 3)
            red = (image[:, :, 2] > 180) & (image[:, :, 0] < 90)
            assert red.sum() > 5000  # the 100x100 square

        # 3. A new instruction: the next commentary follows it and leads with colours.
        question = "Which colours do you see?"
        response = httpx.put(
            f"{base}/api/sources/cam/instruction", json={"instruction": question}, timeout=10
        )
        assert response.status_code == 200, response.text
        started = reader.next_matching(
            lambda e: (
                e.event == "cycle"
                and e.data["event"] == "started"
                and e.data["instruction"] == question
            ),
            timeout=30,
        )
        done = reader.next_matching(
            lambda e: _finished(e) and e.data["cycle"] == started.data["cycle"], timeout=30
        )
        lead = re.split(r"(?<=[.!?])\s", done.data["text"])[0].lower()
        assert any(word in lead for word in COLOUR_WORDS), done.data["text"]
    finally:
        reader.close()

    # 4. redis-cli shows the history as readable text.
    prefix = env["KEY_PREFIX"]
    port = env["REDIS_URL"].rsplit(":", 1)[1].split("/")[0]
    out = subprocess.run(
        ["redis-cli", "-p", port, "XRANGE", f"{prefix}:src:{{cam}}:history", "-", "+"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert first.data["text"] in out
    assert question in out and "finished" in out


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_lookout_up_runs_everything_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    api_port, dead_redis_port = free_port(), free_port()
    env = {
        "REDIS_URL": f"redis://127.0.0.1:{dead_redis_port}/0",  # nothing there: up starts one
        "SERVER_PORT": str(api_port),
        "INFERENCE_INTERVAL": "0.2",
        "CHANGE_THRESHOLD": "0",
    }
    up = LookoutProcess(["up"], env, "up")
    try:
        wait_for_port(api_port, timeout=60)
        reader = SseReader(f"http://127.0.0.1:{api_port}/api/sources/sample/events")
        try:
            event = reader.next_matching(_finished, timeout=60)
        finally:
            reader.close()
        assert event.data["text"], up.log()
        log = up.log()
        assert "starting a private one" in log
        redis_port = int(re.search(r"redis-server --port (\d+)", log).group(1))  # type: ignore[union-attr]
        assert _port_open(redis_port)
    finally:
        code = up.stop(signal.SIGINT, timeout=30)
    assert code == 0, up.log()
    assert not _port_open(api_port) and not _port_open(redis_port)
    assert "open http://127.0.0.1:" in up.log()
    assert "WARNING: the API is open" in up.log()  # no keys: said loudly
    assert "THE API IS OPEN" in up.log()  # and in the API's own startup log


def test_lookout_up_without_redis_says_what_to_install(tmp_path: Path) -> None:
    env = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "PATH": str(tmp_path)}
    up = LookoutProcess(["up"], env, "up-no-redis")
    assert up.proc.wait(30) == 1
    assert "redis-server is not installed" in up.log()
    assert "apt-get install redis-server" in up.log()
