"""Continuous batching in the worker (serving_batch.py), in-process on a real Redis with
ENGINE=minicpmo and MAX_BATCH=4 on the model's own code (tiny checkpoint, CPU, greedy).

cam0 talks long; cam1 is steered as soon as it speaks, so its cycle ends (interrupted) while
cam0 still decodes. Without waiting for cam0, cam1's after-cycle work runs and its next
cycle (the new instruction) starts, joins the running batch — the engine says it admitted a
request into a batch that was decoding — and speaks before cam0 has finished, saying what it
says alone. Compared over the first SAME tokens, as in test_minicpmo_batch_worker.py."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.messages import CycleEvent
from shared.sources import SourceRegistry
from tests.media import make_jpegs
from tests.minicpmo_checkpoint import engine32, tiny_checkpoint
from tests.test_minicpmo_batch_worker import alone_run, shares_start
from tests.worker_support import Feeder, Recorder, background, fast_settings, subscribed
from worker.service import run_worker

pytest.importorskip("torch")

__all__ = ["engine32", "tiny_checkpoint"]  # fixtures, used by name

INSTRUCTIONS = {"cam0": "Describe the scene in detail, please.", "cam1": "What is it?"}
STEERED = "Name the colours."
TOKENS = 160
SAME = 16


def position(recorder: Recorder, source: str, event: str, cycle: str) -> int:
    """Where that event arrived among everything the recorder saw."""
    return next(
        n
        for n, (_, m) in enumerate(recorder.messages)
        if isinstance(m, CycleEvent) and (m.source, m.event, m.cycle) == (source, event, cycle)
    )


async def test_a_source_that_ends_early_rejoins_the_running_batch(
    redis_client: aioredis.Redis,
    test_env: dict[str, str],
    keys: Keys,
    tiny_checkpoint: Path,
    engine32: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from worker.engines.minicpmo import MiniCPMoEngine

    caplog.set_level(logging.INFO, logger="worker.serving_batch")
    jpegs = dict(zip(INSTRUCTIONS, make_jpegs(20)[::10], strict=True))
    engine = engine32  # the worker runs float32 too (MODEL_DTYPE): compared token for token
    _, spoken = alone_run(engine, jpegs["cam0"], INSTRUCTIONS["cam0"], TOKENS)
    assert spoken >= TOKENS * 3 // 4  # cam0 still decodes long after cam1 has spoken
    start = {s: alone_run(engine, jpegs[s], INSTRUCTIONS[s], SAME)[0] for s in INSTRUCTIONS}
    steered_start = alone_run(engine, jpegs["cam1"], STEERED, SAME)[0]
    registry = SourceRegistry(redis_client, keys, "Describe the video.")
    for source, instruction in INSTRUCTIONS.items():
        await registry.register(source)
        await registry.set_instruction(source, instruction)
    settings = fast_settings(
        test_env,
        ENGINE="minicpmo",
        ENGINE_DEVICE="cpu",
        MODEL_DTYPE="float32",
        MODEL_PATH=str(tiny_checkpoint),
        DECODE_TEMPERATURE="0",
        DECODE_MAX_LEN="1024",
        MAX_NEW_TOKENS=str(TOKENS),
        FRAMES_PER_INFERENCE="1",
        CONTEXT_COMMENTARIES="0",
        CHANGE_THRESHOLD="0",
        INFERENCE_INTERVAL="600",  # after the first cycles, only the steered one runs
        MAX_BATCH="4",
        BATCH_WAIT="1.0",  # both first cycles start in one batch
        LEASE_TTL="10",
        HEARTBEAT_TTL="20",
    )
    made = MiniCPMoEngine(settings)
    recorder = Recorder(test_env["REDIS_URL"], keys, list(INSTRUCTIONS))
    feeders = [Feeder(redis_client, keys, s, jpegs[s]) for s in INSTRUCTIONS]
    stop, feeding = asyncio.Event(), asyncio.Event()
    worker = asyncio.create_task(
        run_worker(settings, made, stop=stop, worker_id="join-test", grace=2.0)
    )

    def cycles(source: str, event: str) -> list[str]:
        return [e.cycle for e in recorder.events(source, event)]

    def steered() -> list[str]:
        started = recorder.events("cam1", "started")
        return [e.cycle for e in started if e.instruction == STEERED]  # type: ignore[attr-defined]

    try:
        async with background(recorder.run(), *(f.run(feeding) for f in feeders)):
            await subscribed(recorder)
            await recorder.wait(lambda: bool(cycles("cam1", "first_chunk")), within=120)
            first = cycles("cam1", "first_chunk")[0]
            await registry.set_instruction("cam1", STEERED)
            await recorder.wait(
                lambda: (
                    bool(cycles("cam0", "finished"))
                    and any(c in steered() for c in cycles("cam1", "finished"))
                ),
                within=120,
            )
            writer = made.batched
            stop.set()
            await asyncio.wait_for(worker, 30)  # a clean stop: leases released, engine closed
    finally:
        feeding.set()
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert writer is not None and writer.joined >= 1  # admitted into a decoding batch
    assert any("join the running batch" in r.getMessage() for r in caplog.records)
    cam0 = cycles("cam0", "finished")[0]
    assert cycles("cam0", "started") == [cam0]  # one cycle: it decoded all along
    assert cycles("cam1", "interrupted") == [first]
    again = steered()[0]
    done = position(recorder, "cam0", "finished", cam0)
    # cam1's end, its after-cycle work (its next cycle can start only after it) and its next
    # cycle's first words, all while cam0 was still decoding:
    assert position(recorder, "cam1", "interrupted", first) < done
    assert position(recorder, "cam1", "started", again) < done
    assert position(recorder, "cam1", "first_chunk", again) < done
    said = {e.cycle: e.text for e in recorder.events(None, "finished")}  # type: ignore[attr-defined]
    assert shares_start(said[cam0], start["cam0"])
    assert shares_start(said[again], steered_start)
