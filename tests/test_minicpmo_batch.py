"""MiniCPM-o's batched path (`MiniCPMoEngine.stream_batch`, MAX_BATCH > 1) on the model's own
code (tiny checkpoint, CPU, greedy): each source's text while batched is the text it gets
alone, a cancel stops only its own source, a prompt too long for a slot still runs, and a
request submitted to a running session joins the decoding batch at its next step."""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.minicpmo_checkpoint import cpu_settings, engine32, frames, tiny_checkpoint
from worker.engines.base import BatchItem, EngineRequest, WindowFrame

pytest.importorskip("torch")

__all__ = ["engine32", "frames", "tiny_checkpoint"]  # fixtures, used by name

INSTRUCTIONS = ("What is it?", "Describe the scene in detail, please.", "Count the boxes.")


@pytest.fixture(scope="module")
def batched(engine32: Any, tiny_checkpoint: Path) -> Any:
    """A second engine with MAX_BATCH=4 on the float32 one's loaded model (no second load)."""
    from worker.engines.minicpmo import MiniCPMoEngine

    made = MiniCPMoEngine(cpu_settings(tiny_checkpoint, max_batch=4, model_dtype="float32"))
    made.attach(engine32.model, engine32.processor, engine32.device)
    return made


@pytest.fixture(scope="module")
def requests(frames: list[WindowFrame]) -> list[EngineRequest]:
    """Three sources: 1, 2 and 4 frames, different instructions, one with context."""
    return [
        EngineRequest(
            source=f"cam{i}",
            frames=frames[:count],
            instruction=instruction,
            context=("A box was seen.",) if i == 1 else (),
            max_new_tokens=16,
        )
        for i, (count, instruction) in enumerate(zip((1, 2, 4), INSTRUCTIONS, strict=True))
    ]


def alone(engine: Any, request: EngineRequest) -> str:
    return "".join(c.text for c in engine.stream(request, threading.Event()))


@pytest.fixture(scope="module")
def solo(engine32: Any, requests: list[EngineRequest]) -> list[str]:
    """What each request gets alone: the single, unbatched path."""
    return [alone(engine32, r) for r in requests]


def texts(items: list[BatchItem], count: int) -> list[str]:
    return ["".join(i.chunk.text for i in items if i.index == n and i.chunk) for n in range(count)]


def test_batched_sources_say_what_each_says_alone(
    engine32: Any, batched: Any, requests: list[EngineRequest], solo: list[str]
) -> None:
    assert batched.batch_capacity() == 4 and engine32.batch_capacity() == 1
    cancels = [threading.Event() for _ in requests]
    items = list(batched.stream_batch(requests, cancels))
    assert all(solo)
    assert texts(items, 3) == solo
    ends = [i for i in items if i.chunk is None]
    assert sorted(i.index for i in ends) == [0, 1, 2] and not any(i.error for i in ends)
    # Chunks interleave: source 0's last chunk comes after source 2's first.
    order = [i.index for i in items if i.chunk]
    assert order.index(2) < len(order) - 1 - order[::-1].index(0)


def test_a_cancel_stops_only_its_own_source(
    batched: Any, requests: list[EngineRequest], solo: list[str]
) -> None:
    cancels = [threading.Event() for _ in requests]
    items: list[BatchItem] = []
    for item in batched.stream_batch(requests, cancels):
        items.append(item)
        if item.index == 1 and item.chunk is not None:
            cancels[1].set()  # steering: the instruction of source 1 changed
    got = texts(items, 3)
    assert (got[0], got[2]) == (solo[0], solo[2])
    assert len(got[1]) < len(solo[1]) and solo[1].startswith(got[1])
    assert batched.batched.decoder.active.sum() == 0  # every slot freed


def test_a_prompt_too_long_for_a_slot_runs_alone(
    batched: Any, requests: list[EngineRequest], solo: list[str]
) -> None:
    # A long context: prompt plus answer pass the slots' DECODE_MAX_LEN (generate() runs it).
    huge = dataclasses.replace(requests[0], context=("a box " * 600,), max_new_tokens=8)
    mixed = [huge, requests[2]]
    items = list(batched.stream_batch(mixed, [threading.Event(), threading.Event()]))
    got = texts(items, 2)
    assert got[0] and got[1] == solo[2]
    assert [(i.index, i.error) for i in items if i.chunk is None] == [(1, ""), (0, "")]


def test_a_request_submitted_mid_decode_joins_the_running_batch(
    batched: Any, requests: list[EngineRequest], solo: list[str]
) -> None:
    long = [dataclasses.replace(r, max_new_tokens=48) for r in requests[:2]]
    session = batched.open_batch()
    items: list[BatchItem] = []
    try:
        session.submit([(0, long[0], threading.Event()), (1, long[1], threading.Event())])
        while not any(i.index == 0 and i.chunk for i in items):
            items.extend(session.step())
        session.submit([(2, requests[2], threading.Event())])  # due while 0 and 1 decode
        while session.pending():
            items.extend(session.step())
        joined = session.joined()
    finally:
        session.close()
    assert joined == 1  # admitted into the running batch, not after it
    order = [(i.index, i.chunk is None) for i in items]
    first_of_joiner = order.index((2, False))
    assert first_of_joiner < order.index((0, True)) and first_of_joiner < order.index((1, True))
    got = texts(items, 3)
    assert got[2] == solo[2]  # the joiner says what it says alone
    for index in (0, 1):  # the running ones go on as alone (over their first 16 tokens; the
        # last characters may be a multi-byte character split at the token boundary)
        same = os.path.commonprefix([got[index], solo[index]])
        assert len(same) >= len(solo[index]) - 4 and len(got[index]) > len(solo[index])
