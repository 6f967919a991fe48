"""A real Redis master, its replica and one Sentinel (quorum 1) for tests, on free ports.

`fail_master()` kills the master; the sentinel promotes the replica after about
DOWN_AFTER_MS, and `master_port()` then names the replica's port.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.helpers import free_port, wait_for_port

SERVICE = "lookout"
DOWN_AFTER_MS = 1000


class RedisSentinel:
    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.master, self.replica, self.sentinel = free_port(), free_port(), free_port()
        self.root = Path(tempfile.mkdtemp(prefix="lookout-sentinel-"))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel}/{SERVICE}"

    def start(self) -> RedisSentinel:
        self._server(self.master, [])
        self._server(self.replica, ["--replicaof", "127.0.0.1", str(self.master)])
        config = self.root / "sentinel.conf"
        config.write_text(
            f"port {self.sentinel}\nbind 127.0.0.1\ndir {self.root}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.master} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
        )
        self._spawn(self.sentinel, ["redis-server", str(config), "--sentinel"])
        deadline = time.monotonic() + 20
        while not self._replica_synced():
            if time.monotonic() > deadline:
                raise TimeoutError("the replica did not sync with the master")
            time.sleep(0.1)
        return self

    def _server(self, port: int, extra: list[str]) -> None:
        folder = self.root / str(port)
        folder.mkdir()
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        self._spawn(port, [*argv, "--appendonly", "no", "--dir", str(folder), *extra])

    def _spawn(self, port: int, argv: list[str]) -> None:
        self.procs[port] = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(port)

    def _replica_synced(self) -> bool:
        with redis.Redis(port=self.replica, socket_timeout=2) as client:
            return client.info("replication").get("master_link_status") == "up"

    def master_port(self) -> int:
        with redis.Redis(port=self.sentinel, socket_timeout=2) as client:
            _, port = client.sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def fail_master(self) -> None:
        proc = self.procs.pop(self.master)
        proc.kill()
        proc.wait(10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)
