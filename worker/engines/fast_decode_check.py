"""Does the fast path compute what the model's own forward computes? Teacher-forced check.

Free-running greedy agreement proves little on random weights: the top two logits are often
within one bf16 step, so two correct implementations part after a few tokens. Here the same
token sequence goes through both paths: the model's own forward over prompt + tokens at
once, and the fast path's prefill of the prompt followed by one step per token. At every
position the logits must agree within a tolerance, and the top-1 token must match unless the
reference's top two logits are within that tolerance of each other (a near-tie, which either
path may break either way).

Tolerance: TOLERANCE_STEPS bf16 steps (2^-7 relative) of the largest reference logit at that
position. Two bf16 paths that sum the same products in another order differ by a few steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from worker.engines.fast_decode import FastDecoder

BF16_STEP = 2.0**-7  # relative spacing of bfloat16 numbers (8 bits of mantissa)
TOLERANCE_STEPS = 8


@dataclass(frozen=True)
class Agreement:
    """How the fast path's logits compare with the model's own, position by position."""

    positions: int
    max_abs_diff: float  # over all positions and vocabulary entries
    max_tolerance: float  # the largest per-position tolerance used
    top1_matches: int
    near_ties: int  # mismatches where the reference's top two were within tolerance
    mismatches: int  # top-1 differs and it was no near-tie
    within_tolerance: bool  # every position's logits within its tolerance

    @property
    def ok(self) -> bool:
        """The fast path agrees: logits within tolerance, top-1 equal except near-ties."""
        return self.within_tolerance and self.mismatches == 0


@torch.inference_mode()
def reference_logits(llm: Any, embeds: torch.Tensor, forced: torch.Tensor) -> torch.Tensor:
    """The model's own forward over prompt embeddings then `forced` ids: [n+1, vocab] floats,
    the logits after the prompt's last position and after each forced token."""
    tokens = llm.model.embed_tokens(forced.view(1, -1).to(embeds.device)).to(embeds.dtype)
    whole = torch.cat([embeds, tokens], dim=1)
    out = llm(inputs_embeds=whole, use_cache=False, return_dict=True)
    length = int(embeds.shape[1])
    logits: torch.Tensor = out.logits[0, length - 1 :].float()
    return logits


@torch.inference_mode()
def fast_logits(decoder: FastDecoder, embeds: torch.Tensor, forced: torch.Tensor) -> torch.Tensor:
    """The fast path's logits for the same sequence: prefill, then one step per forced id."""
    length = int(embeds.shape[1])
    if decoder.prefiller is None:
        raise ValueError("the decoder has no bucketed prefill to check")
    rows = [decoder.prefiller.prefill(embeds).view(-1).clone()]
    for offset, token in enumerate(forced.view(-1)):
        rows.append(decoder.step(token.view(1), length + offset).view(-1).clone())
    return torch.stack(rows)


def compare(reference: torch.Tensor, fast: torch.Tensor) -> Agreement:
    """Agreement of two [positions, vocab] float logit tables."""
    tolerance = reference.abs().amax(dim=-1) * BF16_STEP * TOLERANCE_STEPS
    diff = (reference - fast).abs().amax(dim=-1)
    top2 = reference.topk(2, dim=-1).values
    tie = (top2[:, 0] - top2[:, 1]) <= tolerance
    same = reference.argmax(dim=-1) == fast.argmax(dim=-1)
    return Agreement(
        positions=int(reference.shape[0]),
        max_abs_diff=float(diff.max()),
        max_tolerance=float(tolerance.max()),
        top1_matches=int(same.sum()),
        near_ties=int((~same & tie).sum()),
        mismatches=int((~same & ~tie).sum()),
        within_tolerance=bool((diff <= tolerance).all()),
    )


def teacher_forced(
    llm: Any, decoder: FastDecoder, embeds: torch.Tensor, forced: torch.Tensor
) -> Agreement:
    """Compare the fast path with `llm`'s own forward on prompt `embeds` + `forced` ids."""
    reference = reference_logits(llm, embeds, forced)
    return compare(reference, fast_logits(decoder, embeds, forced.to(embeds.device)))
