"""Decode attention that reads only the filled part of each sequence's static cache.

The single-sequence step attends over all DECODE_MAX_LEN cache positions with a mask: every
token reads the whole cache (0.30 GB per token at 2048 positions for Qwen3-8B), so a larger
DECODE_MAX_LEN slows every request. Here each sequence b attends over positions
`0 .. lengths[b] - 1` only, with the lengths read on the device, so one captured CUDA graph
serves every length.

On CUDA with Triton: flash-decoding. The cache is cut into splits of SPLIT_LEN positions; one
program per (sequence, kv head, split) computes a partial softmax over its split for all the
query heads that share the kv head, and returns at once where its split lies past the
sequence's length; a second kernel combines the partials of the filled splits. The grid is
fixed by DECODE_MAX_LEN (graph-safe); the memory read is only what exists.

Elsewhere (CPU, tests): the same result with a mask over the whole cache.
"""

from __future__ import annotations

from typing import Any

import torch

SPLIT_LEN = 256  # cache positions per program: short prompts still spread over a few SMs
BLOCK_N = 64  # positions per loop iteration inside a program

try:  # Triton ships with CUDA builds of PyTorch; CPU builds (CI) take the masked path
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover (depends on the install)
    triton = None


def masked_attention(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """Reference: q [B, H, D] over caches [S >= B, KV, L, D], positions < lengths[b] -> [B, H, D]."""
    batch, heads, dim = q.shape
    kv_heads, max_len = k_cache.shape[1], k_cache.shape[2]
    groups = heads // kv_heads
    # Query heads h = kv * groups + g share kv head `kv`, as HF's repeat_kv lays them out.
    qg = q.view(batch, kv_heads, groups, dim)
    keys, values = k_cache[:batch], v_cache[:batch]
    scores = torch.matmul(qg, keys.transpose(-1, -2)).float() * dim**-0.5
    positions = torch.arange(max_len, device=q.device)
    outside = positions.view(1, -1) >= lengths.view(-1, 1)  # [B, L]
    scores = scores.masked_fill(outside.view(batch, 1, 1, max_len), float("-inf"))
    probs = torch.softmax(scores, dim=-1).to(q.dtype)
    return torch.matmul(probs, values).view(batch, heads, dim)


if triton is not None:
    # Triton kernels: untyped by nature (pointers and constexprs), hence the ignores.
    @triton.jit  # type: ignore[untyped-decorator]
    def _split_kernel(  # type: ignore[no-untyped-def]
        q_ptr, k_ptr, v_ptr, len_ptr, o_ptr, m_ptr, l_ptr,
        stride_qb, stride_qh, stride_kb, stride_kh, stride_kl,
        stride_vb, stride_vh, stride_vl, scale,
        KV: tl.constexpr, SPLITS: tl.constexpr, SPLIT: tl.constexpr, GROUPS: tl.constexpr,
        G_PAD: tl.constexpr, D: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        b, kvh, split = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        length = tl.load(len_ptr + b).to(tl.int32)
        start = split * SPLIT
        offs_g = tl.arange(0, G_PAD)
        offs_d = tl.arange(0, D)
        row = (b * KV + kvh) * SPLITS + split  # this program's partial
        m_i = tl.full([G_PAD], float("-inf"), tl.float32)
        l_i = tl.zeros([G_PAD], tl.float32)
        acc = tl.zeros([G_PAD, D], tl.float32)
        if start < length:
            heads = kvh * GROUPS + offs_g
            q_off = b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :]
            q = tl.load(q_ptr + q_off, mask=(offs_g < GROUPS)[:, None], other=0.0)
            end = tl.minimum(start + SPLIT, length)
            k_base = k_ptr + b * stride_kb + kvh * stride_kh
            v_base = v_ptr + b * stride_vb + kvh * stride_vh
            for step in range(SPLIT // BLOCK):  # masked lanes load nothing
                offs_n = start + step * BLOCK + tl.arange(0, BLOCK)
                inside = offs_n < end
                k = tl.load(
                    k_base + offs_n[:, None] * stride_kl + offs_d[None, :],
                    mask=inside[:, None],
                    other=0.0,
                )
                s = tl.dot(q, tl.trans(k)) * scale
                s = tl.where(inside[None, :], s, float("-inf"))
                m_new = tl.maximum(m_i, tl.max(s, 1))
                p = tl.exp(s - m_new[:, None])
                alpha = tl.exp(m_i - m_new)
                l_i = l_i * alpha + tl.sum(p, 1)
                v = tl.load(
                    v_base + offs_n[:, None] * stride_vl + offs_d[None, :],
                    mask=inside[:, None],
                    other=0.0,
                )
                acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
                m_i = m_new
        tl.store(o_ptr + (row * G_PAD + offs_g)[:, None] * D + offs_d[None, :], acc)
        tl.store(m_ptr + row * G_PAD + offs_g, m_i)
        tl.store(l_ptr + row * G_PAD + offs_g, l_i)

    @triton.jit  # type: ignore[untyped-decorator]
    def _combine_kernel(  # type: ignore[no-untyped-def]
        o_ptr, m_ptr, l_ptr, len_ptr, out_ptr, stride_ob, stride_oh,
        KV: tl.constexpr, SPLITS: tl.constexpr, S_PAD: tl.constexpr, SPLIT: tl.constexpr,
        GROUPS: tl.constexpr, G_PAD: tl.constexpr, D: tl.constexpr,
    ):  # fmt: skip
        b, h = tl.program_id(0), tl.program_id(1)
        kvh, g = h // GROUPS, h % GROUPS
        length = tl.load(len_ptr + b).to(tl.int32)
        used = (length + SPLIT - 1) // SPLIT  # splits that hold positions; the rest are empty
        offs_s = tl.arange(0, S_PAD)
        valid = offs_s < used
        rows = (b * KV + kvh) * SPLITS + offs_s
        m = tl.load(m_ptr + rows * G_PAD + g, mask=valid, other=float("-inf"))
        l_s = tl.load(l_ptr + rows * G_PAD + g, mask=valid, other=0.0)
        weight = tl.where(valid, tl.exp(m - tl.max(m, 0)), 0.0)
        offs_d = tl.arange(0, D)
        o = tl.load(
            o_ptr + (rows * G_PAD + g)[:, None] * D + offs_d[None, :],
            mask=valid[:, None],
            other=0.0,
        )
        out = tl.sum(o * weight[:, None], 0) / tl.sum(l_s * weight, 0)
        out_off = b * stride_ob + h * stride_oh + offs_d
        tl.store(out_ptr + out_off, out.to(out_ptr.dtype.element_ty))


def _triton_attention(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    batch, heads, dim = q.shape
    kv_heads, max_len = k_cache.shape[1], k_cache.shape[2]
    groups = heads // kv_heads
    g_pad = max(16, triton.next_power_of_2(groups))  # tl.dot wants 16 rows at least
    splits = triton.cdiv(max_len, SPLIT_LEN)
    partial = torch.empty(
        (batch, kv_heads, splits, g_pad, dim), device=q.device, dtype=torch.float32
    )
    m = torch.empty((batch, kv_heads, splits, g_pad), device=q.device, dtype=torch.float32)
    l_sum = torch.empty_like(m)
    out = torch.empty_like(q)
    _split_kernel[(batch, kv_heads, splits)](
        q, k_cache, v_cache, lengths, partial, m, l_sum,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2), dim**-0.5,
        KV=kv_heads, SPLITS=splits, SPLIT=SPLIT_LEN, GROUPS=groups, G_PAD=g_pad, D=dim,
        BLOCK=BLOCK_N, num_warps=4, num_stages=2,
    )  # fmt: skip
    _combine_kernel[(batch, heads)](
        partial, m, l_sum, lengths, out, out.stride(0), out.stride(1),
        KV=kv_heads, SPLITS=splits, S_PAD=triton.next_power_of_2(splits), SPLIT=SPLIT_LEN,
        GROUPS=groups, G_PAD=g_pad, D=dim, num_warps=4,
    )  # fmt: skip
    return out


@torch.library.custom_op("lookout::decode_attention", mutates_args=())
def _decode_attention_op(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """An opaque op to torch.compile: Inductor keeps the Triton kernels as they are."""
    return _triton_attention(q, k_cache, v_cache, lengths)


@_decode_attention_op.register_fake
def _(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, lengths: torch.Tensor) -> Any:
    return torch.empty_like(q)


def length_aware_available(device: torch.device) -> bool:
    """Whether the length-aware kernel can run on `device` (CUDA with Triton)."""
    return triton is not None and device.type == "cuda"


def decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    lengths: torch.Tensor,
    length_aware: bool,
) -> torch.Tensor:
    """Attention of one new query per sequence: q [B, H, D] (bf16) over the first B slots of
    caches [S, KV, L, D], reading positions < lengths[b]; returns [B, H, D]."""
    if length_aware:
        out: torch.Tensor = _decode_attention_op(q, k_cache, v_cache, lengths)
        return out
    return masked_attention(q, k_cache, v_cache, lengths)
