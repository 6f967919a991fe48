"""`run_batch` (worker/cycle_batch.py) on a real Redis with the scripted engine through the
Engine's default `stream_batch`: every source gets its own cycle events and history entry; a
source cancelled mid-batch ends `interrupted` while the others finish; a batch whose every
source is cancelled (the worker stopping) still ends each cycle; an engine failure fails
every source not yet ended; a batch session holds the engine while any request runs, takes a
request that joins it meanwhile, and lets a waiting model call (an ask) in once its last one
ends; a model engine's rules pass joins the open batch instead of waiting for it, with the
verdicts the lock path gives."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator, Sequence

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
from worker.engines.rules_prompt import rules_request
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

    async def ask() -> str:  # an ask's model call (worker/asks.py, through CycleRunner.run)
        question = EngineRequest("a", [FRAME], "What is in the box?", kind="answer")
        return "".join([c.text async for c in runner.stream(question, threading.Event())])

    runner.engine.script = script  # type: ignore[attr-defined]
    cycles = CycleRunner(redis_client, keys, settings, runner, "w1")
    first, later = jobs("a"), jobs("b")
    batch = await runner.open_batch()
    running = submit(cycles, batch, first, await announce(cycles, first))
    asked = asyncio.create_task(ask())
    await until(runner.others_waiting, 5, "the ask waiting for the engine")
    joined = submit(cycles, batch, later, await announce(cycles, later))  # still taken in
    gate.set()
    outcomes = [await follow(cycles, s) for s in running + joined]
    assert [o.status for o in outcomes] == ["finished", "finished"]
    assert batch.closed  # closed by its last end; the lock passes on
    assert await asyncio.wait_for(asked, 10) == "one two."
    calls = runner.engine.calls  # type: ignore[attr-defined]
    [answered] = [c for c in calls if "the box" in c.prompt]
    cycle_ends = [c.ended for c in calls if c is not answered]
    assert len(cycle_ends) == 2 and answered.started >= max(cycle_ends)  # it waited for both
    assert not runner.others_waiting()


async def test_a_rules_pass_joins_the_open_batch_instead_of_waiting_for_it(
    redis_client: aioredis.Redis, settings: Settings, keys: Keys, runner: EngineRunner
) -> None:
    gates = {"a": threading.Event(), "b": threading.Event()}
    answer = ("1: yes\n", "2: no\n", "3: yes")

    def script(request: EngineRequest) -> tuple[str, ...]:
        if request.source in gates:
            gates[request.source].wait(30)
        return answer if "Is this true now" in request.instruction else ("one ", "two.")

    engine = runner.engine
    assert isinstance(engine, ScriptedEngine)
    engine.script = script
    conditions = ["a box", "a cat", "a dog"]
    window = EngineRequest("r", [FRAME], "Describe r.", context=("said before",), speak=True)
    cycles = CycleRunner(redis_client, keys, settings, runner, "w1")
    first, later = jobs("a"), jobs("b")
    batch = await runner.open_batch()
    running = submit(cycles, batch, first, await announce(cycles, first))
    rules = asyncio.create_task(runner.judge(window, conditions))
    await until(lambda: batch.requests() == 2, 5, "the rules pass submitted to the batch")
    assert not runner.others_waiting()  # it does not wait for the engine lock
    joined = submit(cycles, batch, later, await announce(cycles, later))
    gates["a"].set()  # "b" stays held: the batch cannot close before it is let go
    verdicts = await asyncio.wait_for(rules, 10)
    assert not batch.closed and batch.requests() == 1  # answered inside the open batch
    gates["b"].set()
    outcomes = [await follow(cycles, s) for s in running + joined]
    assert [o.status for o in outcomes] == ["finished", "finished"] and batch.closed
    # The lock path (no batch open) on the same window and the same scripted answer:
    assert verdicts == await runner.judge(window, conditions) == [True, False, True]
    calls = engine.calls
    judged = [c for c in calls if "Is this true now" in c.prompt]
    assert [c.request for c in judged] == [rules_request(window, conditions)] * 2
    a, b = (next(c for c in calls if c.request.source == s) for s in "ab")
    assert a.ended <= judged[0].started and judged[0].ended <= b.started  # one more request


def test_an_engine_with_its_own_judge_must_say_whether_it_is_the_prompt() -> None:
    # Left marked as the prompt, the batched rules pass would bypass its judge unseen.
    with pytest.raises(TypeError, match="judges_by_prompt"):

        class Own(ScriptedEngine):
            def judge(self, request: EngineRequest, conditions: Sequence[str]) -> list[bool | None]:
                return [True] * len(conditions)

    class Declared(ScriptedEngine):
        judges_by_prompt = False

        def judge(self, request: EngineRequest, conditions: Sequence[str]) -> list[bool | None]:
            return [True] * len(conditions)

    assert not Declared.judges_by_prompt and ScriptedEngine.judges_by_prompt
