"""`lookout producer` as a real subprocess: bad input exits non-zero with a clear message; a good
file is captured until SIGTERM, which leaves the status `stopped`."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import redis

from shared.keys import Keys
from tests.helpers import LookoutProcess
from tests.media import make_mp4, truncate_copy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mp4(tmp_path_factory.mktemp("cli") / "clip.mp4", seconds=2)


def _run_to_exit(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    proc = LookoutProcess(["producer", *args], env, "producer")
    try:
        code = proc.proc.wait(60)
    finally:
        proc.stop()
    return code, proc.log()


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        ("/nonexistent/clip.mp4", 1, "missing, unreadable or not a video"),
        ("truncated", 1, "truncated.mp4"),
        ("ftp://host/clip.mp4", 2, "unsupported scheme 'ftp'"),
    ],
)
def test_unusable_sources_exit_non_zero_with_a_clear_message(
    test_env: dict[str, str], clip: Path, tmp_path: Path, url: str, code: int, message: str
) -> None:
    if url == "truncated":
        url = str(truncate_copy(clip, tmp_path / "truncated.mp4", 0.4))
    exit_code, log = _run_to_exit(["--source", "cam", "--url", url], test_env)
    assert exit_code == code, log
    assert message in log
    assert "Traceback" not in log


def test_bad_source_name_exits_2(test_env: dict[str, str], clip: Path) -> None:
    exit_code, log = _run_to_exit(["--source", "bad name!", "--url", str(clip)], test_env)
    assert exit_code == 2 and "invalid source name" in log


def test_file_is_captured_until_sigterm(test_env: dict[str, str], clip: Path) -> None:
    keys = Keys(test_env["KEY_PREFIX"])
    client = redis.Redis.from_url(test_env["REDIS_URL"])
    proc = LookoutProcess(["producer", "--source", "cam", "--url", str(clip)], test_env, "producer")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and client.xlen(keys.frames("cam")) < 5:
            assert proc.alive(), proc.log()
            time.sleep(0.2)
        assert client.xlen(keys.frames("cam")) >= 5, proc.log()
        status = client.hgetall(keys.producer_status("cam"))
        assert status[b"state"] == b"live" and status[b"pid"] == str(proc.proc.pid).encode()
        assert client.ttl(keys.producer_status("cam")) > 0
        assert proc.stop(signal.SIGTERM) == 0, proc.log()
        assert client.hget(keys.producer_status("cam"), "state") == b"stopped"
    finally:
        proc.stop()
        client.close()
