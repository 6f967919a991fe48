"""How the fast decoder picks a token: the sampling settings and the host-side sampler."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    """Token choice: temperature 0 is greedy; otherwise top-k then top-p sampling."""

    temperature: float = 0.7
    top_k: int = 100
    top_p: float = 0.8


def sample(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Pick the next token from float logits [1, vocab]; returns a [1] int64 tensor."""
    if params.temperature <= 0:
        return logits.argmax(dim=-1)
    scaled = logits / params.temperature
    k = min(params.top_k, scaled.shape[-1]) if params.top_k > 0 else scaled.shape[-1]
    values, indices = torch.topk(scaled, k, dim=-1)
    probs = torch.softmax(values, dim=-1)
    if params.top_p < 1.0:
        cumulative = probs.cumsum(dim=-1)
        keep = (cumulative - probs) < params.top_p  # always keeps the first
        probs = torch.where(keep, probs, torch.zeros_like(probs))
    choice = torch.multinomial(probs, 1)
    return indices.gather(-1, choice).view(1)
