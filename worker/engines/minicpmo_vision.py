"""MiniCPM-o's SigLIP attention through PyTorch's fused attention (SDPA).

The remote code builds its vision encoder with eager attention unless flash-attn is
installed: each of 27 layers materialises the full [frames, 16, 1032, 1032] score matrix in
float32 for four 640x360 frames (270 MB written and read back per layer). SDPA computes the
same softmax(QK^T * scale + mask) V without it. `use_sdpa(vpm)` swaps the forward of each
layer's `SiglipAttention` (the module stays, its weights too); anything that does not look
like that class is left alone. tests/test_minicpmo_real.py compares both on the real code.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F

ATTENTION_PARTS = ("q_proj", "k_proj", "v_proj", "out_proj", "num_heads", "head_dim", "scale")


def sdpa_forward(
    self: Any,
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    output_attentions: bool | None = False,
) -> tuple[torch.Tensor, None]:
    """SiglipAttention.forward with fused attention; the additive mask is used as it comes."""
    batch, length, _ = hidden_states.shape
    shape = (batch, length, self.num_heads, self.head_dim)
    q = self.q_proj(hidden_states).view(shape).transpose(1, 2)
    k = self.k_proj(hidden_states).view(shape).transpose(1, 2)
    v = self.v_proj(hidden_states).view(shape).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, scale=self.scale)
    return self.out_proj(out.transpose(1, 2).reshape(batch, length, -1)), None


def use_sdpa(vpm: Any) -> int:
    """Route the vision encoder's eager attention layers through SDPA; returns how many."""
    swapped = 0
    for layer in getattr(getattr(vpm, "encoder", None), "layers", []):
        attn: Any = getattr(layer, "self_attn", None)
        if type(attn).__name__ == "SiglipAttention" and all(
            hasattr(attn, part) for part in ATTENTION_PARTS
        ):
            attn.forward = types.MethodType(sdpa_forward, attn)
            swapped += 1
    return swapped
