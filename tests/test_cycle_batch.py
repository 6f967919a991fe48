"""`run_batch` (worker/cycle_batch.py) on a real Redis with the scripted engine through the
Engine's default `stream_batch`: every source gets its own cycle events and history entry; a
source cancelled mid-batch ends `interrupted` while the others finish; a batch whose every
source is cancelled (the worker stopping) still ends each cycle; an engine failure fails
every source not yet ended; a batch session holds the engine while any request runs, takes a
request that joins it meanwhile, and lets a waiting model call in once its last one ends."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.settings import Settings
from tests.scripted_engine import ScriptedEngine
from tests.worker_support import until
from worker.cycle import CycleRunner
from worker.cycle_batch import BatchJob, announce, follow, run_batch, submit
from worker.engines.base import Chunk, EngineRequest, WindowFrame
from worker.runner import EngineRunner

FRAME = WindowFrame(seq=1, ts=1.0, image=np.zeros((8, 8, 3), np.uint8))


class CancelOnChunk(ScriptedEngine):
    """Sets the cancel of every request named in `cut` once that request's first chunk is out."""

    cut: tuple[str, ...] = ()

    def stream(self, request: EngineRequest, cancel: threading.Event) -> Iterator[Chunk]:
        for chunk in super().stream(request, cancel):
            yield chunk
            if request.source in self.cut:
                cancel.set()


@pytest.fixture
async def runner() -> AsyncIterator[EngineRunner]:
    made = EngineRunner(CancelOnChunk(chunks=("one ", "two ", "three."), delay=0.0))
    await made.load()
    yield made
    made.close()


def jobs(*sources: str) -> list[BatchJob]:
    return [BatchJob(s, [FRAME], f"Describe {s}.", (), threading.Event()) for s in sources]


async def test_each_source_ends_on_its_own(
    redis_client: aioredis.Redis, settings: Settings, keys: Keys, runner: EngineRunner
) -> None:
    runner.engine.cut = ("b",)  # type: ignore[attr-defined]
    cycles = CycleRunner(redis_client, keys, settings, runner, "w1")
    outcomes = await run_batch(cycles, runner, jobs("a", "b", "c"))
    done = ("finished", "one two three.")
    assert [(o.status, o.text) for o in (outcomes[0], outcomes[2])] == [done, done]
    # Cut after its first chunk: that chunk may or may not have gone out before the cancel.
    assert (outcomes[1].status, outcomes[1].text in ("", "one")) == ("interrupted", True)
    assert len({o.cycle for o in outcomes}) == 3
    for source, outcome in zip("abc", outcomes, strict=True):
        entries = await redis_client.xrange(keys.history(source))
        assert [e[0].decode() for e in entries] == [outcome.history_id]


async def test_a_batch_cancelled_whole_still_ends_every_cycle(
    redis_client: aioredis.Redis, settings: Settings, keys: Keys, runner: EngineRunner
) -> None:
    batch = jobs("a", "b")
    for job in batch:
        job.cancel.set()  # the worker stopping before the engine starts
    cycles = CycleRunner(redis_client, keys, settings, runner, "w1")
    outcomes = await run_batch(cycles, runner, batch)
    assert [o.status for o in outcomes] == ["interrupted", "interrupted"]
    assert await redis_client.exists(keys.open_cycle("a"), keys.open_cycle("b")) == 0


async def test_an_engine_failure_fails_every_source_left(
    redis_client: aioredis.Redis, settings: Settings, keys: Keys, runner: EngineRunner
) -> None:
    runner.engine.fail_with = "the GPU fell over"  # type: ignore[attr-defined]
    cycles = CycleRunner(redis_client, keys, settings, runner, "w1")
    outcomes = await run_batch(cycles, runner, jobs("a", "b"))
    assert [o.status for o in outcomes] == ["failed", "failed"]
    assert all("the GPU fell over" in o.error for o in outcomes)


async def test_a_batch_holds_the_engine_until_its_last_request_ends(
    redis_client: aioredis.Redis, settings: Settings, keys: Keys, runner: EngineRunner
) -> None:
    gate = threading.Event()  # "a" runs until "b" has joined, however slow the machine

    def script(request: EngineRequest) -> tuple[str, ...]:
        if request.source == "a":
            gate.wait(30)
        return ("one ", "two.")

    runner.engine.script = script  # type: ignore[attr-defined]
    cycles = CycleRunner(redis_client, keys, settings, runner, "w1")
    first, later = jobs("a"), jobs("b")
    batch = await runner.open_batch()
    running = submit(cycles, batch, first, await announce(cycles, first))
    rules = asyncio.create_task(runner.judge(EngineRequest("a", [FRAME], "x"), ["a box"]))
    await until(runner.others_waiting, 5, "the rules pass waiting for the engine")
    joined = submit(cycles, batch, later, await announce(cycles, later))  # still taken in
    gate.set()
    outcomes = [await follow(cycles, s) for s in running + joined]
    assert [o.status for o in outcomes] == ["finished", "finished"]
    assert batch.closed  # closed by its last end; the lock passes on
    assert len(await asyncio.wait_for(rules, 10)) == 1
    calls = runner.engine.calls  # type: ignore[attr-defined]
    [judged] = [c for c in calls if "a box" in c.prompt]
    cycle_ends = [c.ended for c in calls if c is not judged]
    assert len(cycle_ends) == 2 and judged.started >= max(cycle_ends)  # it waited for both
    assert not runner.others_waiting()
