"""MiniCPM-o's batched path (`MiniCPMoEngine.stream_batch`, MAX_BATCH > 1) on the model's own
code (tiny checkpoint, CPU, greedy): each source's text while batched is the text it gets
alone, a cancel stops only its own source, and a prompt too long for a slot still runs."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.minicpmo_checkpoint import cpu_settings, engine, frames, tiny_checkpoint
from worker.engines.base import BatchItem, EngineRequest, WindowFrame

pytest.importorskip("torch")

__all__ = ["engine", "frames", "tiny_checkpoint"]  # fixtures, used by name

INSTRUCTIONS = ("What is it?", "Describe the scene in detail, please.", "Count the boxes.")


@pytest.fixture(scope="module")
def batched(engine: Any, tiny_checkpoint: Path) -> Any:
    """A second engine with MAX_BATCH=4 on the first one's loaded model (no second load)."""
    from worker.engines.minicpmo import MiniCPMoEngine

    made = MiniCPMoEngine(cpu_settings(tiny_checkpoint, max_batch=4))
    made.attach(engine.model, engine.processor, engine.device)
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
            max_new_tokens=12,
        )
        for i, (count, instruction) in enumerate(zip((1, 2, 4), INSTRUCTIONS, strict=True))
    ]


def alone(engine: Any, request: EngineRequest) -> str:
    return "".join(c.text for c in engine.stream(request, threading.Event()))


def texts(items: list[BatchItem], count: int) -> list[str]:
    return ["".join(i.chunk.text for i in items if i.index == n and i.chunk) for n in range(count)]


def test_batched_sources_say_what_each_says_alone(
    engine: Any, batched: Any, requests: list[EngineRequest]
) -> None:
    assert batched.batch_capacity() == 4 and engine.batch_capacity() == 1
    cancels = [threading.Event() for _ in requests]
    items = list(batched.stream_batch(requests, cancels))
    expected = [alone(engine, r) for r in requests]
    assert all(expected)
    assert texts(items, 3) == expected
    ends = [i for i in items if i.chunk is None]
    assert sorted(i.index for i in ends) == [0, 1, 2] and not any(i.error for i in ends)
    # Chunks interleave: source 0's last chunk comes after source 2's first.
    order = [i.index for i in items if i.chunk]
    assert order.index(2) < len(order) - 1 - order[::-1].index(0)


def test_a_cancel_stops_only_its_own_source(
    engine: Any, batched: Any, requests: list[EngineRequest]
) -> None:
    long = [dataclasses.replace(r, max_new_tokens=40) for r in requests]
    cancels = [threading.Event() for _ in long]
    items: list[BatchItem] = []
    for item in batched.stream_batch(long, cancels):
        items.append(item)
        if item.index == 1 and item.chunk is not None:
            cancels[1].set()  # steering: the instruction of source 1 changed
    got = texts(items, 3)
    full = [alone(engine, r) for r in long]
    assert (got[0], got[2]) == (full[0], full[2])
    assert len(got[1]) < len(full[1]) and full[1].startswith(got[1])
    assert batched.batched.decoder.active.sum() == 0  # every slot freed


def test_a_prompt_too_long_for_a_slot_runs_alone(
    engine: Any, batched: Any, requests: list[EngineRequest]
) -> None:
    huge = dataclasses.replace(requests[0], max_new_tokens=batched.batched.decoder.max_len)
    mixed = [huge, requests[2]]
    items = list(batched.stream_batch(mixed, [threading.Event(), threading.Event()]))
    got = texts(items, 2)
    assert got[0] and got[1] == alone(engine, requests[2])
    assert [(i.index, i.error) for i in items if i.chunk is None] == [(1, ""), (0, "")]
