"""`lookout api --workers N`: N API processes on one port, for every core of a host.

Each worker is a full `lookout api` process with its own event loop, Redis client and
subscriptions (one per watched source per worker). They share the port through
SO_REUSEPORT: each binds its own listening socket and the kernel spreads new connections
evenly over them (by a hash of the client's address and port), instead of every process
waking for each connection on one shared socket.

The supervisor here only starts the workers, restarts one that dies (after a pause, so a
worker that cannot start does not spin), and on SIGTERM/SIGINT stops them all: signals
only set a flag, as everywhere in Lookout.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import time
from types import FrameType

log = logging.getLogger("api")

RESTART_PAUSE_S = 2.0
STOP_TIMEOUT_S = 10.0
LISTEN_BACKLOG = 4096  # a connect burst of thousands of viewers must not be refused


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port) that other workers may bind too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


def port_in_use(host: str, port: int) -> bool:
    """Whether another program (not sharing with SO_REUSEPORT) holds (host, port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


class Supervisor:
    """Keeps `count` worker processes running `command` until told to stop."""

    def __init__(self, command: list[str], count: int) -> None:
        self.command = command
        self.count = count
        self.stopping = False
        self.procs: list[subprocess.Popen[bytes]] = []

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.procs = [self._spawn(i) for i in range(self.count)]
        while not self.stopping:
            time.sleep(0.2)
            for i, proc in enumerate(self.procs):
                if proc.poll() is not None and not self.stopping:
                    log.warning(
                        "api worker %d (pid %d) exited with %s", i, proc.pid, proc.returncode
                    )
                    time.sleep(RESTART_PAUSE_S)
                    self.procs[i] = self._spawn(i)
        return self._shutdown()

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(self.command)
        log.info("api worker %d started (pid %d)", index, proc.pid)
        return proc

    def _shutdown(self) -> int:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return 0


def worker_command(env_file: str, host: str, port: int) -> list[str]:
    """How the supervisor starts one worker: this same CLI, sharing the port."""
    return [
        sys.executable,
        "-m",
        "lookout",
        "--env-file",
        env_file,
        "api",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--reuse-port",
    ]
