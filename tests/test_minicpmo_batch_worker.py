"""A real `lookout worker` process with ENGINE=minicpmo and MAX_BATCH=4 on the model's own code
(tiny checkpoint, CPU, greedy) commenting on three sources at once: their windows run as one
batch, each source's commentary is what the engine says for that window alone, and an
instruction change on one source interrupts only that source's cycle, not its batch mates'.

Both the worker and the alone runs use the checkpoint in float32 (MODEL_DTYPE): on random
bf16 weights the top two logits are often one bf16 step apart, and a batch of another size
(or another CPU) rounds a sum differently, so two correct runs may part at any token. "What
it says alone" is still compared over the first SAME tokens (the logits themselves are
compared teacher-forced in tests/test_fast_decode_batch.py)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.messages import CycleEvent
from shared.records import FrameRecord
from shared.sources import SourceRegistry
from tests.helpers import LookoutProcess
from tests.media import make_jpegs
from tests.minicpmo_checkpoint import engine32, tiny_checkpoint
from tests.worker_support import FAST, Recorder, background, subscribed
from worker.engines.base import EngineRequest, WindowFrame

pytest.importorskip("torch")
pytest.importorskip("transformers")

__all__ = ["engine32", "tiny_checkpoint"]  # fixtures, used by name

SOURCES = ("cam0", "cam1", "cam2")
INSTRUCTIONS = ("What is it?", "Describe the scene in detail, please.", "Count the boxes.")
STEERED = "Name the colours."
TOKENS = 48
SAME = 16  # leading tokens every batched commentary must share with the source alone


def shares_start(text: str, alone_start: str) -> bool:
    """`text` begins like the first SAME tokens alone (the last characters may be a split
    multi-byte character at the token boundary)."""
    return len(os.path.commonprefix([text, alone_start])) >= len(alone_start) - 4


async def feed(redis: aioredis.Redis, keys: Keys, jpegs: list[bytes], stop: asyncio.Event) -> None:
    """Each source's own unchanging picture at 10 fps: every window of a source is the same."""
    seq = 0
    while not stop.is_set():
        for source, jpeg in zip(SOURCES, jpegs, strict=True):
            record = FrameRecord(seq, time.time(), 640, 360, jpeg)
            await redis.xadd(keys.frames(source), record.to_fields(), maxlen=50)  # type: ignore[arg-type]
        seq += 1
        await asyncio.sleep(0.1)


def alone_run(engine: Any, jpeg: bytes, instruction: str, tokens: int) -> tuple[str, int]:
    """Text and token count of one source's window on its own (the single, unbatched path)."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    request = EngineRequest(
        source="alone",
        frames=[WindowFrame(seq=0, ts=0.0, image=image)],  # type: ignore[arg-type]
        instruction=instruction,
        max_new_tokens=tokens,
    )
    chunks = list(engine.stream(request, threading.Event()))
    return "".join(c.text for c in chunks), sum(c.tokens for c in chunks)


def alone(engine: Any, jpeg: bytes, instruction: str, tokens: int = TOKENS) -> str:
    """What the engine says for one source's window on its own."""
    return alone_run(engine, jpeg, instruction, tokens)[0]


def started_at(recorder: Recorder, cycle: str) -> float:
    return next(
        t
        for t, m in recorder.messages
        if isinstance(m, CycleEvent) and m.event == "started" and m.cycle == cycle
    )


def batch_mate(recorder: Recorder, source: str, moment: float) -> str:
    """The cycle of `source` that started nearest to `moment` (the same round starts them
    within milliseconds; rounds lie INFERENCE_INTERVAL apart at least)."""
    starts = [
        (abs(t - moment), m.cycle)
        for t, m in recorder.messages
        if isinstance(m, CycleEvent) and m.event == "started" and m.source == source
    ]
    return min(starts)[1]


@pytest.mark.slow
async def test_three_sources_batched_say_what_each_says_alone_and_steer_alone(
    redis_client: aioredis.Redis,
    test_env: dict[str, str],
    keys: Keys,
    tiny_checkpoint: Path,
    engine32: Any,
) -> None:
    engine = engine32  # the worker runs float32 too (MODEL_DTYPE): compared token for token
    jpegs = make_jpegs(30)[::10]  # three different pictures
    registry = SourceRegistry(redis_client, keys, "Describe the video.")
    for source, instruction in zip(SOURCES, INSTRUCTIONS, strict=True):
        await registry.register(source)
        await registry.set_instruction(source, instruction)
    pairs = list(zip(SOURCES, jpegs, INSTRUCTIONS, strict=True))
    expected = {s: alone(engine, j, i) for s, j, i in pairs}
    start = {s: alone(engine, j, i, SAME) for s, j, i in pairs}
    assert len(set(start.values())) == 3 and all(len(t) > 8 for t in start.values())
    recorder = Recorder(test_env["REDIS_URL"], keys, list(SOURCES))
    env = {
        **test_env,
        **FAST,
        "ENGINE": "minicpmo",
        "ENGINE_DEVICE": "cpu",
        "MODEL_DTYPE": "float32",
        "MODEL_PATH": str(tiny_checkpoint),
        "DECODE_TEMPERATURE": "0",
        "DECODE_MAX_LEN": "1024",
        "MAX_NEW_TOKENS": str(TOKENS),
        "FRAMES_PER_INFERENCE": "1",
        "CONTEXT_COMMENTARIES": "0",  # every window of a source makes the same prompt
        "CHANGE_THRESHOLD": "0",
        "INFERENCE_INTERVAL": "0.5",
        "MAX_BATCH": "4",
        "BATCH_WAIT": "1.0",
        "LEASE_TTL": "10",
        "HEARTBEAT_TTL": "20",
    }
    stop = asyncio.Event()
    worker = LookoutProcess(["worker", "--worker-id", "batch-test"], env, "minicpmo-batch")

    def ended(source: str) -> list[Any]:
        return recorder.events(source, "finished") + recorder.events(source, "interrupted")

    try:
        async with background(recorder.run(), feed(redis_client, keys, jpegs, stop)):
            await subscribed(recorder)
            await recorder.wait(lambda: all(ended(s) for s in SOURCES), within=150)
            beat = await redis_client.hgetall(keys.worker_status("batch-test"))  # type: ignore[misc]
            # Steer cam1 as soon as a later cycle of it speaks: only that cycle is cut off.
            seen = {e.cycle for e in recorder.events("cam1", "first_chunk")}
            await recorder.wait(
                lambda: any(e.cycle not in seen for e in recorder.events("cam1", "first_chunk")),
                within=60,
            )
            steered = next(
                e for e in recorder.events("cam1", "first_chunk") if e.cycle not in seen
            ).cycle
            await registry.set_instruction("cam1", STEERED)
            await recorder.wait(lambda: any(e.cycle == steered for e in ended("cam1")), within=60)
            await recorder.wait(
                lambda: any(e.instruction == STEERED for e in recorder.events("cam1", "started")),  # type: ignore[attr-defined]
                within=60,
            )
            after = [
                e.cycle
                for e in recorder.events("cam1", "started")
                if e.instruction == STEERED  # type: ignore[attr-defined]
            ]
            await recorder.wait(lambda: any(e.cycle == after[0] for e in ended("cam1")), within=60)
            stop.set()
    finally:
        code = worker.stop()
    log = worker.log()
    assert code == 0, log
    later = {e.cycle for e in recorder.events("cam1", "started") if e.instruction == STEERED}  # type: ignore[attr-defined]
    assert beat[b"batch"].startswith(b"eager, 4 slots"), beat
    assert "one batch of 3 sources" in log
    for source in SOURCES:  # every finished commentary, batched or not, as the source alone
        texts = [
            e.text  # type: ignore[attr-defined]
            for e in recorder.events(source, "finished")
            if e.cycle not in later
        ]
        assert texts and all(shares_start(t, start[source]) for t in texts), (source, texts)
    cut = next(e for e in ended("cam1") if e.cycle == steered)
    assert cut.event == "interrupted"
    assert len(cut.text) < len(expected["cam1"])
    assert shares_start(cut.text, start["cam1"][: len(cut.text)])
    moment = started_at(recorder, steered)
    for source in ("cam0", "cam2"):  # its batch mates ran to the end
        mate = batch_mate(recorder, source, moment)
        assert abs(started_at(recorder, mate) - moment) < 0.3
        assert [e.event for e in ended(source) if e.cycle == mate] == ["finished"]
    resumed = next(e for e in ended("cam1") if e.cycle == after[0])
    assert resumed.event == "finished"
    assert shares_start(resumed.text, alone(engine, jpegs[1], STEERED, SAME))
