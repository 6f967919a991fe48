"""Which decoders the fast path takes: by their layers, whatever the config's model_type says,
and never one that is not Llama-shaped (tiny real transformers models, CPU)."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SMALL = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1}
SMALL.update(num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)


def qwen3(**changes: Any) -> Any:
    config = transformers.Qwen3Config(**{**SMALL, "head_dim": 8, **changes})
    return transformers.Qwen3ForCausalLM(config)


def test_a_qwen3_whose_config_says_otherwise_is_taken() -> None:
    from worker.engines.decoder_shape import DecoderParts, find_decoder

    model = qwen3()
    model.config.model_type = "minicpmo"  # as MiniCPM-o 4.5's LLM config says
    parts = find_decoder(model)
    assert isinstance(parts, DecoderParts) and parts.base is model.model


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (
            lambda: transformers.GPT2LMHeadModel(
                transformers.GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=4)
            ),
            "no Llama-shaped decoder",
        ),
        (
            lambda: transformers.GemmaForCausalLM(
                transformers.GemmaConfig(**SMALL, head_dim=8)  # RMSNorm(1 + w), scaled embeddings
            ),
            "GemmaDecoderLayer",
        ),
        (lambda: qwen3(use_sliding_window=True, sliding_window=16), "sliding-window"),
        (lambda: qwen3(rope_scaling={"rope_type": "dynamic", "factor": 2.0}), "dynamic RoPE"),
    ],
)
def test_what_is_not_llama_shaped_is_refused_with_the_reason(model: Any, reason: str) -> None:
    from worker.engines.decoder_shape import find_decoder

    found = find_decoder(model())
    assert isinstance(found, str) and reason in found
