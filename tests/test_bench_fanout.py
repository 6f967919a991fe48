"""The fan-out bench measures what it says: every kind's parsing viewers read real latencies.

A few viewers for a second per kind (real redis-server, real `lookout api`, the bench's own
client process): a parser that loses its place in the stream (HTTP chunk framing, part
heads, PCM chunk offsets) shows as latencies of hours or as messages not counted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["sse", "mjpeg", "pcm"])
def test_each_kind_is_delivered_whole_with_sane_latencies(kind: str, tmp_path: Path) -> None:
    results = tmp_path / "fanout.json"
    subprocess.run(
        [sys.executable, str(REPO / "bench" / "fanout.py"), "--kind", kind]
        + ["--viewers", "20", "--seconds", "1.5", "--results", str(results)],
        check=True,
        cwd=REPO,
        timeout=150,
        capture_output=True,
    )
    [row] = [json.loads(line) for line in results.read_text().splitlines()]
    assert row["connected"] == 20 and row["sent"] >= 10, row
    if kind == "mjpeg":
        # Latest wins: a frame that came while a viewer was still sending the one before, or
        # that the API's reader found behind a newer one, is skipped on a loaded machine.
        assert 0.5 <= row["delivered"] <= 1.0, row
    else:
        assert row["delivered"] == pytest.approx(1.0), row  # nothing lost, nothing counted twice
    # Loopback on a loaded machine: seconds at worst; a garbled timestamp reads as decades.
    assert 0 < row["p50_ms"] <= row["p99_ms"] < 10_000, row
