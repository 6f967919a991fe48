"""Real servers and processes for tests: redis-server on a free port, Lookout subprocesses."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float) -> str:
    """Poll `url` until it answers 2xx: "" then, else why not ("exited with N", or the
    timeout). The caller stops `proc` and says which server it was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=1):
                return ""
        except OSError:
            time.sleep(0.05)
    return f"not healthy after {timeout:g}s"


class RedisServer:
    """A private redis-server (no persistence) that a test may stop and start again."""

    def __init__(self, port: int | None = None) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="lookout-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


class LookoutProcess:
    """`python -m lookout ARGS` as a real subprocess with its output kept in a log file."""

    def __init__(
        self, args: list[str], env: Mapping[str, str], name: str, cwd: Path = REPO
    ) -> None:
        self.name = name
        self.log_path = Path(tempfile.mkstemp(prefix=f"lookout-{name}-", suffix=".log")[1])
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lookout", "--env-file", "/nonexistent", *args],
                cwd=cwd,
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._note_hang()
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return int(self.proc.returncode)

    def _note_hang(self) -> None:
        """Append to the log why the process did not stop: its signal masks and its stacks."""
        lines = ["--- did not stop in time; killed. /proc status and py-spy dump:"]
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text().splitlines()
            lines += [x for x in status if x.startswith(("State", "Sig", "Shd"))]
        except OSError as exc:
            lines.append(f"no /proc status: {exc}")
        if spy := shutil.which(
            "py-spy", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
        ):
            dump = subprocess.run(
                [spy, "dump", "--pid", str(self.proc.pid)], capture_output=True, timeout=20
            )
            lines.append((dump.stdout + dump.stderr).decode(errors="replace"))
        with self.log_path.open("a") as log:
            log.write("\n".join(lines) + "\n")
