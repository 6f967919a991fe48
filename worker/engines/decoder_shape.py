"""Which decoders the fast path can run, found inside any wrapper model.

The static-cache step (`fast_decode`) re-implements one Llama-shaped layer: RMSNorm, q/k/v/o
projections (Qwen3: per-head q/k norms), rotary angles from the model's own `rotary_emb`,
grouped-query attention, the layer's own MLP. A decoder qualifies by its structure: layers of
transformers' llama, qwen2, qwen3 or mistral classes (or remote-code copies keeping those
class names) with those parts, no sliding window and no length-dependent RoPE. The config's
`model_type` is no guide: MiniCPM-o 4.5's LLM is transformers' Qwen3 with `model_type`
'minicpmo'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

SUPPORTED_TYPES = ("llama", "qwen2", "qwen3", "mistral")


@dataclass
class DecoderParts:
    """The pieces of a causal LM the step needs (found inside any wrapper model)."""

    base: Any  # an nn.Module with embed_tokens, layers, norm, rotary_emb
    lm_head: Any  # an nn.Module (Linear, or a quantised linear)
    config: Any


def _family(layer: Any) -> str | None:
    """The Llama-shaped family a decoder layer belongs to, by where its class comes from.

    transformers' own classes live in `transformers.models.<family>`; remote code that copies
    them keeps the class name (`Qwen3DecoderLayer`). The config's `model_type` is no guide:
    MiniCPM-o 4.5's LLM is transformers' Qwen3 with `model_type` 'minicpmo'.
    """
    cls = type(layer)
    parts = cls.__module__.split(".")
    if parts[:2] == ["transformers", "models"] and len(parts) > 2 and parts[2] in SUPPORTED_TYPES:
        return parts[2]
    prefixes = {"Llama": "llama", "Qwen2": "qwen2", "Qwen3": "qwen3", "Mistral": "mistral"}
    for prefix, family in prefixes.items():
        rest = cls.__name__.removeprefix(prefix)
        if rest != cls.__name__ and rest == "DecoderLayer":
            return family
    return None


def _shape_problem(base: Any, config: Any) -> str | None:
    """Why `base` is not a Llama-shaped decoder the step can run, or None if it is."""
    layers = getattr(base, "layers", None)
    if not layers or not all(hasattr(base, n) for n in ("embed_tokens", "norm")):
        return "no Llama-shaped decoder (embed_tokens/layers/norm) found"
    layer = layers[0]
    family = _family(layer)
    if family is None:
        kind = getattr(config, "model_type", "")
        return (
            f"decoder layers are {type(layer).__name__} (config type {kind!r}), not those of "
            f"{', '.join(SUPPORTED_TYPES)}"
        )
    attn = getattr(layer, "self_attn", None)
    parts = ("q_proj", "k_proj", "v_proj", "o_proj")
    if attn is None or not all(hasattr(attn, n) for n in parts):
        return f"{family} layer without q/k/v/o projections"
    if (family == "qwen3") != hasattr(attn, "q_norm"):
        return f"{family} layer with{'out' if family == 'qwen3' else ''} per-head q/k norms"
    if getattr(config, "use_sliding_window", False):
        return "sliding-window attention is not supported"
    if not hasattr(base, "rotary_emb"):
        return "decoder has no shared rotary embedding"
    scaling = getattr(config, "rope_scaling", None) or {}
    rope = scaling.get("rope_type", scaling.get("type", "default"))
    if rope == "dynamic":  # the angles would depend on the sequence length
        return "dynamic RoPE scaling is not supported"
    return None


def find_decoder(model: nn.Module) -> DecoderParts | str:
    """Locate the Llama-shaped decoder in `model`, or return why the fast path cannot apply."""
    base: Any = None
    head: Any = None
    llm = getattr(model, "llm", None)  # MiniCPM-o keeps its Qwen3ForCausalLM here
    lang = getattr(model, "language_model", None)  # Llava and friends (transformers 4.x)
    inner = getattr(model, "model", None)
    if llm is not None and hasattr(llm, "model"):
        base, head = llm.model, getattr(llm, "lm_head", None)
    elif lang is not None:
        if hasattr(lang, "lm_head"):
            base, head = lang.model, lang.lm_head
        else:
            base, head = lang, getattr(model, "lm_head", None)
    elif inner is not None and hasattr(inner, "language_model"):  # transformers 5.x layout
        base, head = inner.language_model, getattr(model, "lm_head", None)
    elif inner is not None and hasattr(inner, "layers"):  # a plain *ForCausalLM
        base, head = inner, getattr(model, "lm_head", None)
    if base is None or head is None:
        return "no Llama-shaped decoder (embed_tokens/layers/lm_head) found"
    config = base.config
    problem = _shape_problem(base, config)
    if problem is not None:
        return problem
    return DecoderParts(base=base, lm_head=head, config=config)
