"""Decode with sampling on the device and one step in flight (`fast_decode_sampled`), on the
real MiniCPM-o code (tiny checkpoint, CPU: the same loop runs eagerly there)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.minicpmo_checkpoint import engine, frames, tiny_checkpoint
from worker.engines.base import WindowFrame

torch = pytest.importorskip("torch")

__all__ = ["engine", "frames", "tiny_checkpoint"]  # fixtures, used by name


def prefill(engine: Any, frames: list[WindowFrame]) -> tuple[Any, int]:
    from worker.engines import minicpmo_text as text

    prompt = text.build_prompt_text(engine.processor.tokenizer, len(frames), "What is it?")
    inputs = engine._inputs(prompt, type("R", (), {"frames": frames})())
    embeds = text.embed(engine.model, inputs)
    return embeds, int(embeds.shape[1])


def answer(engine: Any, embeds: Any, length: int, params: Any, count: int, stop: Any) -> list[int]:
    first = engine.decoder.prefiller.prefill(embeds)
    return list(engine.decoder.tokens(first, length, count, params, stop))


def test_the_engine_decodes_with_sampling_on_the_device(engine: Any) -> None:
    from worker.engines.fast_decode import SamplingParams

    assert engine.decoder.sampled is not None
    assert engine.decoder.sampled.params == SamplingParams(temperature=0.0)  # DECODE_TEMPERATURE


def test_device_sampling_loop_gives_the_host_loops_tokens(
    engine: Any, frames: list[WindowFrame]
) -> None:
    from worker.engines.fast_decode import SamplingParams

    embeds, length = prefill(engine, frames)
    on_device = SamplingParams(temperature=0.0)  # the captured settings: the in-flight loop
    on_host = SamplingParams(temperature=0.0, top_k=7)  # greedy too, but not what was captured
    before = engine.decoder.steps
    fast = answer(engine, embeds, length, on_device, 20, frozenset())
    assert len(fast) == 20 and engine.decoder.steps - before == 19
    assert fast == answer(engine, embeds, length, on_host, 20, frozenset())
    stop_at = fast[5]
    stopped = answer(engine, embeds, length, on_device, 20, frozenset({stop_at}))
    assert stopped == fast[: fast.index(stop_at) + 1]  # ends with the stop id, nothing after


def test_the_loop_never_steps_past_the_static_cache(engine: Any, frames: list[WindowFrame]) -> None:
    from worker.engines.fast_decode import SamplingParams

    embeds, length = prefill(engine, frames)
    room = engine.decoder.max_len - length
    ids = answer(engine, embeds, length, SamplingParams(temperature=0.0), room + 50, frozenset())
    assert len(ids) == room + 1  # the first id from the prefill, then one per free position


def test_device_sampling_draws_from_the_top_k_top_p_distribution() -> None:
    from worker.engines.fast_decode_params import SamplingParams
    from worker.engines.fast_decode_sampled import sample_on_device

    torch.manual_seed(0)
    logits = torch.full((1, 50), -30.0)
    logits[0, 3], logits[0, 9], logits[0, 20] = 0.0, float(torch.log(torch.tensor(3.0))), -1.0
    params = SamplingParams(temperature=1.0, top_k=2, top_p=1.0)  # ids 9 (3/4) and 3 (1/4)
    draws = torch.cat([sample_on_device(logits, params) for _ in range(4000)]).view(-1)
    assert set(draws.tolist()) == {3, 9}
    assert abs(float((draws == 9).float().mean()) - 0.75) < 0.03
    narrow = SamplingParams(temperature=1.0, top_k=2, top_p=0.5)  # top-p keeps id 9 alone
    assert {int(sample_on_device(logits, narrow)) for _ in range(200)} == {9}
