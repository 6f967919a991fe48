"""A real worker process exports its own metrics on WORKER_METRICS_PORT: cycle and first-chunk
latency histograms, skips by reason, tokens and tokens/s, read with Prometheus' own parser."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.helpers import LookoutProcess, free_port
from worker.metrics import reason_label


def samples(text: str) -> dict[str, list[Sample]]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def value(found: dict[str, list[Sample]], family: str, name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in found.get(family, [])
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_skip_reasons_are_bounded_labels() -> None:
    reason = "scene changed 0.37 < CHANGE_THRESHOLD 5 since the last commentary"
    assert reason_label(reason) == "scene_changed"
    assert reason_label("") == "other"


def test_a_worker_exports_cycle_latency_skips_and_tokens(
    tmp_path: Path, test_env: dict[str, str]
) -> None:
    clip = tmp_path / "still.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "color=c=0x102060:s=640x360:r=10:d=3",
         "-vf", "drawbox=x=260:y=120:w=120:h=120:color=red:t=fill",
         "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", str(clip)],
        check=True, timeout=60,
    )  # fmt: skip
    port = free_port()
    env = {
        **test_env,
        "WORKER_METRICS_PORT": str(port),
        "INFERENCE_INTERVAL": "0.2",
        "CAPTURE_FPS": "4",
    }  # CHANGE_THRESHOLD stays 5: a still clip is commented on once, then skipped
    worker = LookoutProcess(["worker", "--worker-id", "w-metrics"], env, "worker-metrics")
    producer = LookoutProcess(["producer", "--source", "still", "--url", str(clip)], env, "prod")
    try:
        deadline = time.monotonic() + 60
        while True:
            assert worker.alive() and time.monotonic() < deadline, worker.log()
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            found = samples(response.text)
            skips = value(found, "lookout_worker_skips", "lookout_worker_skips_total")
            if skips >= 2 and value(
                found, "lookout_worker_cycle_seconds", "lookout_worker_cycle_seconds_count"
            ):
                break
            time.sleep(0.2)
    finally:
        producer.stop()
        worker.stop()
    # prometheus_client's server answers a client that names no format in 0.0.4 text.
    types = response.headers.get_list("content-type")
    assert types in ([CONTENT_TYPE_LATEST], ["text/plain; version=0.0.4; charset=utf-8"]), types
    cycle = "lookout_worker_cycle_seconds"
    assert value(found, cycle, f"{cycle}_count", kind="commentary", status="finished") >= 1
    assert value(found, cycle, f"{cycle}_sum") > 0
    buckets = [s for s in found[cycle] if s.name == f"{cycle}_bucket"]
    assert [s.value for s in buckets] == sorted(s.value for s in buckets)  # cumulative
    first = "lookout_worker_first_chunk_seconds"
    assert value(found, first, f"{first}_count", kind="commentary") >= 1
    assert value(found, "lookout_worker_skips", "lookout_worker_skips_total",
                 reason="scene_changed") >= 2  # fmt: skip
    assert value(found, "lookout_worker_tokens", "lookout_worker_tokens_total") > 0
    rate = "lookout_worker_tokens_per_second"
    assert value(found, rate, rate, source="still") > 0


def test_a_taken_metrics_port_stops_the_worker_at_start(test_env: dict[str, str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {**test_env, "WORKER_METRICS_PORT": str(port)}
        worker = LookoutProcess(["worker"], env, "worker-port-taken")
        assert worker.proc.wait(30) == 2, worker.log()
    assert f"WORKER_METRICS_PORT {port} on 127.0.0.1" in worker.log()
