"""The rules pass through the real MiniCPM-o code: the tiny random-weights checkpoint of
tests/minicpmo_checkpoint.py answers the numbered yes/no prompt on real frames. What random
weights say is noise, so the assertions are about the pass, not about the answers: it answers
every rule in one pass, and inside an open batch (MAX_BATCH > 1) it joins the decoding batch
and says what it says under the engine lock (greedy)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from tests.minicpmo_checkpoint import cpu_settings, engine, engine32, frames, tiny_checkpoint
from worker.engines.base import BatchItem, EngineRequest, WindowFrame
from worker.engines.rules_prompt import parse_verdicts, rules_request
from worker.runner import EngineRunner

__all__ = ["engine", "engine32", "frames", "tiny_checkpoint"]  # fixtures

CONDITIONS = ["a person is at the door", "it is dark", "a pot boils"]


def test_the_real_model_code_answers_every_rule_in_one_pass(
    engine: Any, frames: list[WindowFrame]
) -> None:
    request = EngineRequest(source="cam", frames=frames, instruction="Describe.")
    verdicts = engine.judge(request, CONDITIONS)
    assert len(verdicts) == 3
    assert all(v is None or isinstance(v, bool) for v in verdicts)
    assert engine.judge(request, []) == []


async def test_a_rules_pass_in_an_open_batch_says_what_it_says_under_the_lock(
    engine32: Any, tiny_checkpoint: Path, frames: list[WindowFrame]
) -> None:
    from worker.engines.minicpmo import MiniCPMoEngine

    engine = engine32  # batched and under the lock compared token for token: float32

    window = EngineRequest(source="cam", frames=frames[:2], instruction="Describe.")
    asked = rules_request(window, CONDITIONS)
    under_lock = "".join(c.text for c in engine.stream(asked, threading.Event()))
    assert under_lock and engine.judge(window, CONDITIONS) == parse_verdicts(under_lock, 3)
    talk = "Describe the scene in detail, please."
    long = EngineRequest(source="long", frames=frames[:1], instruction=talk, max_new_tokens=96)
    spoken = sum(c.tokens for c in engine.stream(long, threading.Event()))
    assert spoken >= 72  # it decodes long after the rules passes have joined
    batched = MiniCPMoEngine(cpu_settings(tiny_checkpoint, max_batch=4, model_dtype="float32"))
    batched.attach(engine.model, engine.processor, engine.device)  # no second load
    writer, runner = batched.batched, EngineRunner(batched)
    try:
        batch = await runner.open_batch()
        [items] = batch.submit([(long, threading.Event())])
        assert isinstance(first := await items.get(), BatchItem) and first.chunk  # decoding
        # Two rules passes due meanwhile: the runner's, and the same request read as text.
        verdicts, text = await asyncio.gather(runner.judge(window, CONDITIONS), batch.text(asked))
        assert not runner.others_waiting() and not batch.closed  # the lock was never asked for
        while isinstance(item := await items.get(), BatchItem) and item.chunk is not None:
            pass  # the long request to its end
        assert isinstance(item, BatchItem) and not item.error
        # Once the batch has closed, the lock path (it waits for the batch's thread to end):
        assert batch.closed and await runner.judge(window, CONDITIONS) == verdicts
    finally:
        runner.close()
    assert writer.joined == 2  # both admitted into the batch while the long one decoded
    assert text == under_lock
    assert verdicts == parse_verdicts(under_lock, 3)
