"""The instruction survives Redis restarted without persistence: real redis-server, a real
producer (which re-registers the source at rev 0) and a real worker (which puts back the
instruction it holds)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.records import CommentaryRecord
from shared.sources import SourceRegistry
from tests.helpers import REPO, LookoutProcess, RedisServer
from tests.media import make_mp4
from tests.worker_support import FAST

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (REPO / "worker" / "engines" / "cpu.py").exists(), reason="CPU engine not present"
    ),
]
INSTRUCTION = "Count the cars."


async def _until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    for _ in range(int(within * 5)):
        try:
            if await check():
                return
        except (aioredis.ConnectionError, OSError):
            pass  # Redis restarting
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {within}s waiting for {what}")


async def test_the_worker_restores_the_instruction_redis_lost(
    test_env: dict[str, str], tmp_path: Path
) -> None:
    server = RedisServer().start()
    clip = make_mp4(tmp_path / "clip.mp4", seconds=2, width=320, height=240)
    env = {
        **test_env,
        **FAST,
        "REDIS_URL": server.url,
        "ENGINE": "cpu",
        "CHANGE_THRESHOLD": "0",
        "LEASE_TTL": "2",
        "SOURCE_FILE_ROOTS": str(tmp_path),
        "RECONNECT_DELAY": "0.2",
        "MAX_RECONNECT_DELAY": "1",
    }
    keys = Keys(test_env.get("KEY_PREFIX", "lookout"))
    client = aioredis.Redis.from_url(server.url)
    registry = SourceRegistry(client, keys, "describe")
    procs = [
        LookoutProcess(["producer", "--source", "cam", "--url", str(clip)], env, "producer"),
        LookoutProcess(["worker", "--worker-id", "keeper"], env, "worker"),
    ]

    async def commented_with_instruction(after: str = "-") -> bool:
        entries = await client.xrange(keys.history("cam"), after, "+")
        records = [CommentaryRecord.from_fields(f) for _, f in entries]
        return any(r.instruction == INSTRUCTION for r in records)

    try:
        await _until(lambda: registry.exists("cam"), 30, "the producer to register cam")
        assert await registry.set_instruction("cam", INSTRUCTION) == 1
        await _until(commented_with_instruction, 30, "a commentary with the instruction")
        server.stop()
        server.start()  # empty: no persistence

        async def restored() -> bool:
            state = await registry.state("cam")
            return state is not None and (state.instruction, state.instruction_rev) == (
                INSTRUCTION,
                1,
            )

        await _until(restored, 30, "the instruction restored at rev 1")
        await _until(commented_with_instruction, 30, "a commentary with it after the restart")
    finally:
        for proc in procs:
            proc.stop()
        await client.aclose()
        server.stop()
    assert "restored it" in procs[1].log()
