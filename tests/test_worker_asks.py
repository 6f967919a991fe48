"""One-off questions through arq: answered on the source's channels and as the job result."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from shared.asks import AskQueueFull, AskStatus, ask_status, enqueue_ask
from shared.keys import Keys, SourceNameError
from shared.records import CommentaryRecord
from shared.sources import SourceRegistry
from tests.scripted_engine import ScriptedEngine
from tests.worker_support import (
    Feeder,
    Recorder,
    background,
    fast_settings,
    scene,
    subscribed,
    until,
    worker,
)


async def wait_status(
    redis: aioredis.Redis, settings: object, job_id: str, want: str, within: float = 10
) -> AskStatus:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        status = await ask_status(redis, settings, job_id)  # type: ignore[arg-type]
        if status is not None and status.status == want:
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job {job_id} is {status}")
        await asyncio.sleep(0.05)


async def test_ask_answer_streams_as_answer_and_is_the_job_result(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    settings = fast_settings(test_env, CHANGE_THRESHOLD="0")
    await SourceRegistry(redis_client, keys, settings.default_instruction).register("cam")
    feeder = Feeder(redis_client, keys, "cam", scene(3))
    rec = Recorder(test_env["REDIS_URL"], keys, ["cam"])

    def script(request: object) -> list[str]:
        kind = request.kind  # type: ignore[attr-defined]
        return ["Two ", "squares."] if kind == "answer" else ["Commentary ", "text."]

    engine = ScriptedEngine(script=script, delay=0.05)
    stop = asyncio.Event()
    async with background(rec.run(), feeder.run(stop)):
        await subscribed(rec)
        async with worker(settings, engine):  # type: ignore[arg-type]
            await rec.wait(lambda: len(rec.events("cam", "finished")) >= 1)
            job_id = await enqueue_ask(redis_client, settings, "cam", "How many squares?")
            queued = await ask_status(redis_client, settings, job_id)
            assert queued is not None and queued.status in ("queued", "in_progress", "complete")
            done = await wait_status(redis_client, settings, job_id, "complete")
        stop.set()
    assert done == AskStatus(
        job_id=job_id,
        source="cam",
        question="How many squares?",
        status="complete",
        answer="Two squares.",
    )
    answer_chunks = [
        m for _, m in rec.messages if getattr(m, "kind", "") == "answer" and hasattr(m, "seq")
    ]
    assert "".join(c.text for c in answer_chunks) == "Two squares."  # type: ignore[attr-defined]
    assert all(c.job_id == job_id and c.question == "How many squares?" for c in answer_chunks)  # type: ignore[attr-defined]
    finished = [e for e in rec.events("cam", "finished") if e.kind == "answer"]
    assert len(finished) == 1 and finished[0].job_id == job_id
    entries = await redis_client.xrange(
        keys.history("cam"), min=finished[0].history_id, max=finished[0].history_id
    )
    record = CommentaryRecord.from_fields(entries[0][1])
    assert (record.kind, record.job_id, record.text) == ("answer", job_id, "Two squares.")
    ask_call = next(c for c in engine.calls if c.request.kind == "answer")
    assert ask_call.request.instruction == "How many squares?" and ask_call.request.frames
    assert engine.max_concurrent == 1  # never two model calls at once


async def test_ask_about_a_source_this_worker_does_not_hold(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    settings = fast_settings(test_env)
    engine = ScriptedEngine(chunks=("From the stream.",))
    # "other" is not registered, so no worker leases it; its frames are still in Redis.
    feeder = Feeder(redis_client, keys, "other", scene(5))
    for _ in range(5):
        await feeder.publish()
    async with worker(settings, engine):  # type: ignore[arg-type]
        answered = await enqueue_ask(redis_client, settings, "other", "Anything?")
        empty = await enqueue_ask(redis_client, settings, "nowhere", "Anything?")
        done = await wait_status(redis_client, settings, answered, "complete")
        failed = await wait_status(redis_client, settings, empty, "failed")
    assert done.answer == "From the stream."
    assert [c.request.source for c in engine.calls] == ["other"]
    assert engine.calls[0].request.frames[-1].seq == 4  # the newest frame
    assert failed.error is not None and "no frames" in failed.error


async def test_a_flood_of_asks_is_refused_once_the_queue_is_full(
    redis_client: aioredis.Redis, test_env: dict[str, str]
) -> None:
    settings = fast_settings(test_env, ASK_QUEUE_MAX="3")
    ids = [await enqueue_ask(redis_client, settings, "cam", f"q{i}") for i in range(3)]
    refused = 0
    for i in range(20):
        with pytest.raises(AskQueueFull) as info:
            await enqueue_ask(redis_client, settings, "cam", f"flood{i}")
        assert info.value.retry_after >= 1
        refused += 1
    assert refused == 20 and len(set(ids)) == 3
    assert await redis_client.zcard(Keys(settings.key_prefix).worker_queue) == 3
    status = await ask_status(redis_client, settings, ids[0])
    assert status is not None and (status.status, status.question) == ("queued", "q0")
    assert await ask_status(redis_client, settings, "0123456789abcdef") is None
    assert await ask_status(redis_client, settings, "../../etc") is None


async def test_ask_runs_between_two_cycles_and_times_out_with_a_reason(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    settings = fast_settings(
        test_env, CHANGE_THRESHOLD="0", INFERENCE_INTERVAL="0", ASK_TIMEOUT="1"
    )
    await SourceRegistry(redis_client, keys, settings.default_instruction).register("cam")
    feeder = Feeder(redis_client, keys, "cam", scene(4))

    def script(request: object) -> list[str]:
        if request.instruction == "slow?":  # type: ignore[attr-defined]
            return [f"w{i} " for i in range(40)]  # 4 s: beyond ASK_TIMEOUT
        return [f"c{i} " for i in range(4)]

    engine = ScriptedEngine(script=script, delay=0.1)
    stop = asyncio.Event()
    async with background(feeder.run(stop)):
        async with worker(settings, engine):  # type: ignore[arg-type]
            await until(lambda: bool(engine.calls))
            job_id = await enqueue_ask(redis_client, settings, "cam", "Quick?")
            await wait_status(redis_client, settings, job_id, "complete")
            slow_id = await enqueue_ask(redis_client, settings, "cam", "slow?")
            slow = await wait_status(redis_client, settings, slow_id, "failed")
            await until(lambda: len(engine.calls) >= 6)
        stop.set()
    calls = sorted(engine.calls, key=lambda c: c.started)
    i = next(n for n, c in enumerate(calls) if c.request.instruction == "Quick?")
    assert i >= 1 and calls[i - 1].request.kind == "commentary"
    assert calls[i - 1].ended <= calls[i].started  # after the cycle that was running
    assert calls[i + 1].started >= calls[i].ended  # before the next one
    assert engine.max_concurrent == 1
    assert slow.error is not None and "ASK_TIMEOUT=1" in slow.error
    slow_call = next(c for c in engine.calls if c.request.instruction == "slow?")
    assert slow_call.cancelled and slow_call.chunks < 40


async def test_bad_questions_are_refused_before_queueing(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    settings = fast_settings(test_env, INSTRUCTION_MAX_CHARS="20")
    with pytest.raises(SourceNameError):
        await enqueue_ask(redis_client, settings, "../cam", "What?")
    with pytest.raises(ValueError, match="empty"):
        await enqueue_ask(redis_client, settings, "cam", "  ")
    with pytest.raises(ValueError, match="INSTRUCTION_MAX_CHARS allows 20"):
        await enqueue_ask(redis_client, settings, "cam", "x" * 21)
    assert await redis_client.zcard(keys.worker_queue) == 0
