"""A real producer process exports its own metrics on PRODUCER_METRICS_PORT (issue 14): frames
read, published and dropped, read failures, reconnects, fps and live, read with Prometheus'
own parser while it captures a real MJPEG camera that then goes away."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.helpers import LookoutProcess, free_port
from tests.media import MjpegServer, make_jpegs

Found = dict[str, list[Sample]]


def scrape(port: int) -> Found | None:
    """The parsed /metrics of the producer, None while it does not answer yet."""
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    except httpx.TransportError:
        return None
    assert response.status_code == 200
    return {f.name: f.samples for f in text_string_to_metric_families(response.text)}


def value(found: Found, name: str, **labels: str) -> float:
    return sum(
        s.value
        for samples in found.values()
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def wait_for(
    port: int, producer: LookoutProcess, check: Callable[[Found], bool], within: float = 30
) -> Found:
    deadline = time.monotonic() + within
    while True:
        assert producer.alive() and time.monotonic() < deadline, producer.log()
        found = scrape(port)
        if found is not None and check(found):
            return found
        time.sleep(0.2)


def test_a_producer_exports_frames_drops_reconnects_and_fps(test_env: dict[str, str]) -> None:
    camera = MjpegServer(make_jpegs(10, 320, 180), fps=25).start()
    port = free_port()
    env = {
        **test_env,
        "PRODUCER_METRICS_PORT": str(port),
        "DISPLAY_FPS": "5",  # the camera sends 25: four of five frames are not due
        "RECONNECT_DELAY": "0.2",
        "MAX_RECONNECT_DELAY": "0.5",
        "STALL_TIMEOUT": "2",
    }
    producer = LookoutProcess(
        ["producer", "--source", "cam", "--url", camera.url()], env, "producer-metrics"
    )
    try:
        live = wait_for(
            port,
            producer,
            lambda f: (
                value(f, "lookout_producer_frames_published_total", source="cam") >= 10
                and value(f, "lookout_producer_fps", source="cam") > 0
            ),
        )
        camera.stop()  # the camera goes away: the producer backs off and retries
        gone = wait_for(
            port,
            producer,
            lambda f: value(f, "lookout_producer_reconnects_total", source="cam") >= 2,
        )
    finally:
        camera.stop()
        producer.stop()
    read = value(live, "lookout_producer_frames_read_total", source="cam")
    published = value(live, "lookout_producer_frames_published_total", source="cam")
    not_due = value(live, "lookout_producer_frames_dropped_total", source="cam", reason="not_due")
    assert read >= published + not_due - 1 and not_due > published  # 25 fps read, 5 published
    assert 1 < value(live, "lookout_producer_fps", source="cam") < 12
    assert value(live, "lookout_producer_live", source="cam") == 1
    assert value(gone, "lookout_producer_live", source="cam") == 0
    assert "lookout_producer_read_failures" in gone  # declared even when none happened


def test_a_taken_metrics_port_stops_the_producer_at_start(test_env: dict[str, str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {**test_env, "PRODUCER_METRICS_PORT": str(port)}
        producer = LookoutProcess(["producer", "--supervise"], env, "producer-port-taken")
        assert producer.proc.wait(30) == 2, producer.log()
    assert f"PRODUCER_METRICS_PORT {port} on 127.0.0.1" in producer.log()
