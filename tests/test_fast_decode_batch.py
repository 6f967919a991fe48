"""Batched decode over per-source cache slots (`fast_decode_batch`, `fast_decode_batch_loop`)
on the real MiniCPM-o code (tiny checkpoint, CPU, eager): each source's logits while batched
agree with the model's own forward and with the source decoded alone; the loop admits, steps
and retires sources as continuous batching should. The checkpoint runs in float32
(MODEL_DTYPE): greedy ids batched and alone are compared token for token, and bf16 near-ties
break differently on CPUs with and without native bf16 dot products."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.minicpmo_checkpoint import engine32, frames, tiny_checkpoint
from worker.engines.base import WindowFrame

torch = pytest.importorskip("torch")

__all__ = ["engine32", "frames", "tiny_checkpoint"]  # fixtures, used by name

INSTRUCTIONS = ("What is it?", "Describe the scene in detail, please.", "Count the boxes.")


def prompt_embeds(engine: Any, frames: list[WindowFrame], instruction: str) -> Any:
    from worker.engines import minicpmo_text as text

    prompt = text.build_prompt_text(engine.processor.tokenizer, len(frames), instruction)
    inputs = engine._inputs(prompt, type("R", (), {"frames": frames})())
    return text.embed(engine.model, inputs)


@pytest.fixture(scope="module")
def prompts(engine32: Any, frames: list[WindowFrame]) -> list[Any]:
    """Three sources' prompts of different lengths (1, 2 and 4 frames)."""
    return [
        prompt_embeds(engine32, frames[:count], instruction)
        for count, instruction in zip((1, 2, 4), INSTRUCTIONS, strict=True)
    ]


@pytest.fixture(scope="module")
def batch(engine32: Any) -> Any:
    from worker.engines.fast_decode_batch import BatchDecoder
    from worker.engines.fast_decode_params import SamplingParams

    return BatchDecoder(
        engine32.decoder, slots=4, max_len=512, sampling=SamplingParams(0.0), use_graph=False
    )


def forced_rows(batch: Any, prompts: list[Any], forced: list[Any]) -> list[Any]:
    """Teacher-forced logits of every prompt, all in slots 0..n-1 at once: [steps+1, vocab]."""
    from worker.engines.fast_decode_params import SamplingParams
    from worker.engines.fast_decode_sampled import sample_on_device

    n = len(prompts)
    rows: list[list[Any]] = [[] for _ in prompts]
    for slot, embeds in enumerate(prompts):
        batch.admit(slot, embeds)
        rows[slot].append(batch.single.logits.clone().view(-1))  # the prefill's logits
        assert int(batch.tok[slot]) == int(sample_on_device(rows[slot][0][None], SamplingParams(0)))
    lengths = torch.tensor([int(p.shape[1]) for p in prompts])
    for step in range(forced[0].numel()):
        tokens = torch.stack([f[step] for f in forced])
        logits = batch.forced_logits(n, tokens, lengths + step)
        for slot in range(n):
            rows[slot].append(logits[slot])
    for slot in range(n):
        batch.release(slot)
    return [torch.stack(r) for r in rows]


def test_each_source_in_a_batch_computes_what_it_computes_alone(
    engine32: Any, batch: Any, prompts: list[Any]
) -> None:
    from worker.engines.fast_decode_check import compare, reference_logits

    engine = engine32
    tokenizer = engine.processor.tokenizer
    texts = (
        " A green box slides to the right.",
        " Two people walk by a door.",
        " Nothing moves here at all.",
    )
    forced = [torch.tensor(tokenizer.encode(t)[:4]) for t in texts]
    together = forced_rows(batch, prompts, forced)
    for slot, embeds in enumerate(prompts):
        alone = forced_rows(batch, [embeds], [forced[slot]])[0]
        assert compare(alone, together[slot]).ok, slot
        reference = reference_logits(engine.model.llm, embeds, forced[slot])
        agreement = compare(reference, together[slot])
        assert agreement.ok and agreement.positions == 5, agreement


def requests_for(prompts: list[Any], counts: list[int], stop: frozenset[int]) -> list[Any]:
    from worker.engines.fast_decode_batch_loop import BatchRequest

    return [
        BatchRequest(prepare=lambda p=p: p, max_new_tokens=c, stop_ids=stop)
        for p, c in zip(prompts, counts, strict=True)
    ]


def test_the_loop_gives_each_source_its_own_answer(batch: Any, prompts: list[Any]) -> None:
    from worker.engines.fast_decode_batch_loop import ContinuousBatch, run_all

    alone = [
        run_all(ContinuousBatch(batch), requests_for([p], [12], frozenset()))[0] for p in prompts
    ]
    assert all(len(ids) == 12 for ids in alone)
    loop = ContinuousBatch(batch)
    together = run_all(loop, requests_for(prompts, [12, 7, 12], frozenset()))
    assert together == [alone[0], alone[1][:7], alone[2]]
    # one step per token after the first for all busy sources at once (one joins per step),
    # not one after another (33 steps)
    assert loop.steps <= 11 + 2 + 1
    stop_at = alone[2][4]
    stopped = run_all(ContinuousBatch(batch), requests_for(prompts[2:], [12], frozenset({stop_at})))
    assert stopped[0] == alone[2][: alone[2].index(stop_at) + 1]  # ends at the stop id


def test_a_new_source_joins_at_the_next_step_and_a_cancelled_one_leaves(
    batch: Any, prompts: list[Any]
) -> None:
    from worker.engines.fast_decode_batch_loop import ContinuousBatch

    loop = ContinuousBatch(batch)
    first, second = requests_for(prompts[:2], [30, 5], frozenset())
    loop.submit(first)
    for _ in range(4):
        loop.iterate()
    before = loop.steps
    loop.submit(second)
    loop.iterate()  # admits the second source; its first token comes from the prefill
    assert set(loop.busy) == {0, 1}
    while 1 in loop.busy:
        loop.iterate()
    assert list(second.tokens()) and loop.steps - before <= 5
    first.cancel.set()
    loop.iterate()  # the cancelled source leaves before another step is queued
    assert not loop.busy
    while not loop.idle():
        loop.iterate()
    produced = list(first.tokens())
    assert 4 <= len(produced) < 30


def test_a_failing_prompt_fails_only_its_own_request(batch: Any, prompts: list[Any]) -> None:
    from worker.engines.fast_decode_batch_loop import BatchRequest, ContinuousBatch

    def broken() -> Any:
        raise RuntimeError("vision failed")

    too_long = torch.zeros((1, batch.max_len, prompts[0].shape[2]), dtype=prompts[0].dtype)
    bad = BatchRequest(prepare=broken, max_new_tokens=5, stop_ids=frozenset())
    huge = BatchRequest(prepare=lambda: too_long, max_new_tokens=5, stop_ids=frozenset())
    good = requests_for(prompts[:1], [5], frozenset())[0]
    loop = ContinuousBatch(batch)
    for request in (bad, huge, good):
        loop.submit(request)
    while not loop.idle():
        loop.iterate()
    with pytest.raises(RuntimeError, match="vision failed"):
        list(bad.tokens())
    with pytest.raises(ValueError, match="does not fit"):
        list(huge.tokens())
    assert len(list(good.tokens())) == 5


def test_the_loop_thread_serves_sources_submitted_from_other_threads(
    batch: Any, prompts: list[Any]
) -> None:
    from worker.engines.fast_decode_batch_loop import ContinuousBatch

    loop = ContinuousBatch(batch)
    stop = threading.Event()
    runner = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    runner.start()
    try:
        requests = requests_for(prompts, [6, 6, 6], frozenset())
        for request in requests:
            loop.submit(request)
        assert [len(list(r.tokens())) for r in requests] == [6, 6, 6]
    finally:
        stop.set()
        runner.join(timeout=30)
    assert not runner.is_alive()


@pytest.mark.parametrize("kind", ["int8", "fp8"])
def test_weight_only_quantisation_stays_near_the_unquantised_and_restores(
    engine32: Any, batch: Any, prompts: list[Any], kind: str
) -> None:
    from worker.engines.fast_decode_quant import WeightOnlyLinear, quantize_decoder

    engine = engine32

    forced = [torch.tensor(engine.processor.tokenizer.encode(" A green box.")[:3])]
    before = forced_rows(batch, prompts[:1], forced)[0]
    restore = quantize_decoder(batch.layers, kind)
    try:
        assert isinstance(batch.layers[0].mlp.down_proj, WeightOnlyLinear)
        assert batch.layers[0].mlp.down_proj.weight.element_size() == 1
        quantised = forced_rows(batch, prompts[:1], forced)[0]
    finally:
        restore()
    relative = float((quantised - before).abs().max() / before.abs().max())
    assert 0 < relative < 0.2, relative  # rounding shows, but the logits stay close
    assert not isinstance(batch.layers[0].mlp.down_proj, WeightOnlyLinear)
    assert torch.equal(forced_rows(batch, prompts[:1], forced)[0], before)


def test_an_unknown_weight_quantisation_is_refused() -> None:
    from worker.engines.fast_decode_quant import quantize_weight

    with pytest.raises(ValueError, match="unknown weight quantisation 'int4'"):
        quantize_weight(torch.ones((4, 4)), "int4")
