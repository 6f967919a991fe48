"""Several prompts prefilled into their BatchDecoder slots by ONE forward of the LLM.

Admitting sources one by one runs one prefill each (17 ms for a 4-frame prompt on an H100),
and each reads every weight again; the eighth source due at once then starts ~8 prefills
late. Here the prompts go through the layers as one batch [prompts, longest, hidden], each
padded at its end (harmless: attention is causal and a prompt's logits are read at its own
last token; the padded positions written to its slot lie past its length, and decoding
overwrites them before reading them), so the weights are read once for all of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from worker.engines.fast_decode import _rotate_half
from worker.engines.fast_decode_batch import BatchDecoder
from worker.engines.fast_decode_sampled import sample_on_device


@torch.inference_mode()
def admit_together(
    decoder: BatchDecoder, slots: Sequence[int], prompts: Sequence[torch.Tensor]
) -> list[int]:
    """Prefill prompt embeddings ([1, L, hidden] each) into `slots` at once; returns each
    one's first token id. The slots are active from now on, as after `BatchDecoder.admit`."""
    d = decoder
    lengths = [int(p.shape[1]) for p in prompts]
    if max(lengths) >= d.max_len:
        raise ValueError(f"a prompt of {max(lengths)} tokens does not fit {d.max_len} slots")
    count, n = len(prompts), max(lengths)
    x = torch.zeros((count, n, prompts[0].shape[-1]), device=d.device, dtype=d.dtype)
    for row, prompt in enumerate(prompts):
        x[row, : lengths[row]] = prompt[0]
    rows = torch.tensor(list(slots), device=d.device)
    cos, sin = d.cos[:n].view(1, 1, n, -1), d.sin[:n].view(1, 1, n, -1)
    for index, layer in enumerate(d.layers):
        attn = layer.self_attn
        h = layer.input_layernorm(x)
        q = attn.q_proj(h).view(count, n, d.heads, d.head_dim)
        k = attn.k_proj(h).view(count, n, d.kv_heads, d.head_dim)
        v = attn.v_proj(h).view(count, n, d.kv_heads, d.head_dim)
        if hasattr(attn, "q_norm"):
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        d.k_cache[index][rows, :, :n] = k
        d.v_cache[index][rows, :, :n] = v
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + attn.o_proj(o.transpose(1, 2).reshape(count, n, d.heads * d.head_dim))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    ends = torch.tensor([length - 1 for length in lengths], device=d.device)
    last = x[torch.arange(count, device=d.device), ends].unsqueeze(1)  # [count, 1, hidden]
    logits = d.parts.lm_head(d.parts.base.norm(last))[:, -1].float()
    first = sample_on_device(logits, d.params).view(count)
    d.tok[rows, 0] = first
    d.pos[rows] = torch.tensor(lengths, device=d.device)
    d.active[rows] = 1
    return [int(token) for token in first.tolist()]
