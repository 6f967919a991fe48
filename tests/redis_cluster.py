"""A real 3-node Redis Cluster for tests: `redis-server --cluster-enabled yes` ×3, no replicas.

Each node keeps its cluster config (nodes.conf) in its own folder, so a node stopped with
`stop_node` and started again with `start_node` rejoins with the same id and slots. No
persistence: a restarted node comes back empty, like a standalone Redis without it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.helpers import free_port, wait_for_port


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is valid and free too."""
    while True:
        port = free_port()
        if port + 10000 <= 65535 and _is_free(port + 10000):
            return port


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class RedisCluster:
    """Three masters on free ports, slots split evenly by `redis-cli --cluster create`."""

    def __init__(self, nodes: int = 3) -> None:
        if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
            raise RuntimeError(
                "redis-server and redis-cli are needed (apt-get install redis-server)"
            )
        self.ports = [_cluster_port() for _ in range(nodes)]
        self.root = Path(tempfile.mkdtemp(prefix="lookout-cluster-"))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """A seed node's URL (REDIS_URL with REDIS_CLUSTER=1: the client finds the others)."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> RedisCluster:
        for port in self.ports:
            self.start_node(port)
        subprocess.run(
            ["redis-cli", "--cluster", "create"]
            + [f"127.0.0.1:{port}" for port in self.ports]
            + ["--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        self.wait_ok()
        return self

    def start_node(self, port: int) -> None:
        folder = self.root / str(port)
        folder.mkdir(exist_ok=True)
        self.procs[port] = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
            + ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            # The other shards keep serving while one is down (the default refuses everything).
            + ["--cluster-require-full-coverage", "no", "--cluster-node-timeout", "2000"]
            + ["--save", "", "--appendonly", "no", "--dir", str(folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(port)

    def stop_node(self, port: int) -> None:
        proc = self.procs.pop(port, None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def wait_ok(self, timeout: float = 20.0) -> None:
        """Until every node reports `cluster_state:ok` and knows every other node."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if all(self._node_ok(port) for port in self.ports):
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster on {self.ports} not ok after {timeout}s")
            time.sleep(0.1)

    def _node_ok(self, port: int) -> bool:
        with redis.Redis(port=port, socket_timeout=2) as client:
            info = client.cluster("info")
            nodes = client.cluster("nodes")
        connected = sum(1 for n in nodes.values() if n.get("connected"))
        return bool(info.get("cluster_state") == "ok" and connected >= len(self.ports))

    def port_of(self, key: str) -> int:
        """The port of the node serving `key`'s slot."""
        with redis.Redis(port=self.ports[0], socket_timeout=2) as client:
            slot = int(client.cluster("keyslot", key))
            for start, end, *nodes in client.cluster("slots"):
                if start <= slot <= end:
                    return int(nodes[0][1])
        raise LookupError(f"no node serves the slot of {key!r}")

    def stop(self) -> None:
        for port in list(self.procs):
            self.stop_node(port)
        shutil.rmtree(self.root, ignore_errors=True)
