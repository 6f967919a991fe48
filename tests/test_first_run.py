"""The first five minutes: `lookout up`, then the README's "Using it" lines, run as written.

`up` runs in a fresh folder with REDIS_URL pointing at nothing, so it starts a private Redis
on a random port. The README's lines then run through bash in that folder with no REDIS_URL
at all (a Redis answering on the default port must not be picked), `.venv/bin` on the PATH
as after `. .venv/bin/activate`. The only change made to them: the API port 8199 becomes the
test's free port.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, LookoutProcess, RedisServer, free_port

README_PORT = "127.0.0.1:8199"


def readme_using_it_lines() -> list[str]:
    """The command lines of the README's "Using it" code block."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Using it", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def shell_env() -> dict[str, str]:
    """A user's shell after `. .venv/bin/activate`, with no Lookout variables set."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "KEY_PREFIX")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def stream_until(command: str, cwd: Path, pattern: str, timeout: float = 60) -> str:
    """Run a never-ending command line until its output matches `pattern`; then stop it."""
    with subprocess.Popen(
        ["bash", "-c", command],
        cwd=cwd,
        env=shell_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    ) as proc:
        assert proc.stdout is not None
        out = b""
        deadline = time.monotonic() + timeout
        try:
            while not re.search(pattern.encode(), out):
                left = deadline - time.monotonic()
                assert left > 0, (
                    f"{command!r} printed no {pattern!r} in {timeout}s:\n{out.decode()}"
                )
                if select.select([proc.stdout], [], [], left)[0]:
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    assert chunk, f"{command!r} ended:\n{out.decode()}"
                    out += chunk
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
    return out.decode(errors="replace")


def run_line(command: str, cwd: Path) -> str:
    done = subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=shell_env(), capture_output=True, timeout=60
    )
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    return done.stdout.decode(errors="replace")


def test_readme_lines_are_there() -> None:
    lines = readme_using_it_lines()
    assert [line.split()[0] for line in lines] == ["lookout", "redis-cli", "curl", "curl"]


@pytest.mark.slow
def test_readme_using_it_steps_run_literally_after_lookout_up(tmp_path: Path) -> None:
    api_port = free_port()
    env = {
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing there: up starts one
        "INFERENCE_INTERVAL": "0.2",
        "CHANGE_THRESHOLD": "0",
    }
    up = LookoutProcess(["up", "--port", str(api_port)], env, "up-readme", cwd=tmp_path)
    lines = [line.replace(README_PORT, f"127.0.0.1:{api_port}") for line in readme_using_it_lines()]
    try:
        deadline = time.monotonic() + 90
        while "past commentaries: redis-cli" not in up.log():
            assert up.alive() and time.monotonic() < deadline, up.log()
            time.sleep(0.1)
        log = up.log()
        redis_url = re.search(r"Redis is (redis://\S+),", log).group(1)  # type: ignore[union-attr]
        assert (tmp_path / "var/redis.url").read_text().strip() == redis_url
        assert redis_url != env["REDIS_URL"]
        redis_dir = re.search(r"redis-server .* --dir (\S+)", log).group(1)  # type: ignore[union-attr]
        assert Path(redis_dir).is_dir()

        tail, xrange, events, mjpeg = lines
        tailed = stream_until(tail, tmp_path, r"sample cycle cycle=\S+ finished")
        assert f"tailing sample on {redis_url}" in tailed
        history = run_line(xrange, tmp_path)
        assert "finished" in history and "Describe what is happening" in history
        printed_cli = re.search(r"past commentaries: (redis-cli .*)", log).group(1)  # type: ignore[union-attr]
        assert "finished" in run_line(printed_cli, tmp_path)  # the line up printed works too
        sse = stream_until(events, tmp_path, r"event: commentary\ndata: \{[^\n]*\n")
        assert '"text":"' in sse.split("event: commentary", 1)[1]
        run_line(mjpeg, tmp_path)
        video = (tmp_path / "sample.mjpeg").read_bytes()
        assert len(video) == 300_000 and video.count(b"\xff\xd8\xff") >= 2
    finally:
        code = up.stop(signal.SIGINT, timeout=30)
    assert code == 0, up.log()
    assert not (tmp_path / "var/redis.url").exists()  # removed on exit
    assert not Path(redis_dir).exists()  # the private Redis's data folder too


def test_up_refuses_a_port_in_use_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
        up = LookoutProcess(["up", "--port", str(port)], env, "up-busy", cwd=tmp_path)
        assert up.proc.wait(30) == 1, up.log()
    log = up.log()
    assert f"port {port} on 127.0.0.1 is already in use" in log
    assert "nothing was started" in log and "lookout up --port PORT" in log
    assert "starting" not in log and "open http" not in log
    assert not (tmp_path / "var").exists()


def test_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lookout", "--version"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"lookout {importlib.metadata.version('lookout')}"


def tail_url(cwd: Path, extra_env: dict[str, str], env_file: str = "/nonexistent") -> str:
    """The Redis URL `lookout tail` reports it uses, in `cwd` with `extra_env`."""
    env = {**shell_env(), **extra_env}
    with subprocess.Popen(
        [sys.executable, "-m", "lookout", "--env-file", env_file, "tail", "sample"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
        finally:
            proc.terminate()
            proc.wait(10)
    match = re.search(r"tailing sample on (\S+) ", first)
    assert match, first
    return match.group(1)


def test_redis_url_precedence_environment_then_env_file_then_var_file(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    written = redis_server.url
    (tmp_path / "var").mkdir()
    (tmp_path / "var/redis.url").write_text(written + "\n")
    other = f"redis://127.0.0.1:{redis_server.port}/3"
    assert tail_url(tmp_path, {}) == written  # nothing explicit: the file up wrote
    (tmp_path / "settings.env").write_text(f"REDIS_URL={other}\n")
    assert tail_url(tmp_path, {}, env_file="settings.env") == other  # .env beats the file
    assert tail_url(tmp_path, {"REDIS_URL": other}) == other  # the environment too
    (tmp_path / "var/redis.url").unlink()
    assert tail_url(tmp_path, {}) == "redis://127.0.0.1:6379/0"  # the default
