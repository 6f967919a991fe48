"""`lookout api --workers 2`: two real processes on one port, each with its own subscriptions;
viewers spread over both, every viewer gets every message, a dead worker is replaced, and
SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import httpx
import psutil
import pytest
import redis.asyncio as aioredis

from shared.bus import SourcePublisher
from shared.keys import Keys
from shared.messages import TextChunk
from shared.sources import SourceRegistry
from tests.helpers import LookoutProcess, free_port, wait_for_port
from tests.test_api_support import SseReader, subscribed, wait_until

pytestmark = pytest.mark.slow

VIEWERS = 12


@pytest.fixture
def supervisor(test_env: dict[str, str]) -> Iterator[tuple[LookoutProcess, int]]:
    port = free_port()
    proc = LookoutProcess(["api", "--port", str(port), "--workers", "2"], test_env, "api-workers")
    try:
        wait_for_port(port, timeout=60)
        yield proc, port
    finally:
        proc.stop()


def workers(proc: LookoutProcess) -> list[psutil.Process]:
    return psutil.Process(proc.proc.pid).children()


def listening(proc: LookoutProcess, port: int) -> int:
    """Workers with their own listening socket on `port` (the port answers once one has)."""
    return sum(
        1
        for w in workers(proc)
        if any(
            c.status == psutil.CONN_LISTEN and c.laddr.port == port
            for c in w.net_connections("tcp")
        )
    )


def streams_of(worker: psutil.Process, port: int) -> int:
    """Established connections `worker` serves on `port`."""
    return sum(
        1
        for c in worker.net_connections("tcp")
        if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
    )


async def test_two_workers_share_the_port_and_each_viewer_gets_every_message(
    supervisor: tuple[LookoutProcess, int], redis_client: aioredis.Redis, keys: Keys
) -> None:
    proc, port = supervisor
    await SourceRegistry(redis_client, keys, "describe").register("cam")

    async def both_listen() -> bool:
        return listening(proc, port) == 2

    # Connections made while only one worker listens all go to it (SO_REUSEPORT).
    await wait_until(both_listen, timeout=60)
    assert len(workers(proc)) == 2
    url = f"http://127.0.0.1:{port}/api/sources/cam/events"
    async with httpx.AsyncClient(timeout=20, limits=httpx.Limits(max_connections=50)) as http:
        responses = [
            await http.send(http.build_request("GET", url), stream=True) for _ in range(VIEWERS)
        ]
        try:
            readers = [SseReader.of(r) for r in responses]
            for reader in readers:
                await reader.ready()
            # Both processes serve viewers, and each subscribed on its own.
            per_worker = [streams_of(w, port) for w in workers(proc)]
            assert sum(per_worker) == VIEWERS and min(per_worker) >= 1, per_worker
            await subscribed(redis_client, keys.text_channel("cam"), count=2)
            pub = SourcePublisher(redis_client, keys, "cam")
            for seq in range(3):
                await pub.text(TextChunk(source="cam", cycle="w", seq=seq, text=f"w{seq} "))
            for reader in readers:
                got = [(await reader.until("chunk", timeout=10)).data["seq"] for _ in range(3)]
                assert got == [0, 1, 2]
        finally:
            for r in responses:
                await r.aclose()


async def test_a_dead_worker_is_replaced_and_sigterm_stops_all(
    supervisor: tuple[LookoutProcess, int],
) -> None:
    proc, port = supervisor
    first = workers(proc)
    first[0].send_signal(signal.SIGKILL)

    async def replaced() -> bool:
        now = workers(proc)
        return len(now) == 2 and first[0].pid not in {w.pid for w in now}

    await wait_until(replaced, timeout=60, interval=0.2)
    wait_for_port(port, timeout=60)
    async with httpx.AsyncClient(timeout=20) as http:
        for _ in range(4):  # whichever worker the kernel picks answers
            assert (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200
    children = workers(proc)
    assert proc.stop() == 0
    _gone, alive = await asyncio.to_thread(psutil.wait_procs, children, 15)
    assert not alive
