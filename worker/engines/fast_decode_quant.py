"""Weight-only INT8 or FP8 for the LLM's linear layers: half the bytes read per token.

Decode at a few sequences is bound by reading the weights (16.4 GB a token for Qwen3-8B in
bf16). Here each q/k/v/o and MLP projection keeps its weight as int8 (symmetric, one scale
per output channel) or float8 e4m3 (likewise scaled), and a small-batch matrix-vector kernel
(Triton) reads the 1-byte weights, widens them to bf16 in registers and multiplies: the
activations stay bf16, so only the weights' rounding costs accuracy (stated as the
teacher-forced logit error in docs/benchmarks.md). The kernel splits K across programs where
N alone gives too few of them (k/v projections), adding the parts atomically in float32.

Where the kernel cannot run (CPU, or more than MAX_KERNEL_ROWS rows as in a prefill) the
weight is widened and a plain `F.linear` runs: same numbers, more memory traffic. The LM head
stays bf16 (7% of the bytes; its rounding would fall straight onto the logits).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

MAX_KERNEL_ROWS = 16  # the kernel pads the rows to 16 for the tensor cores
KINDS = ("int8", "fp8")
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover (CPU builds of PyTorch)
    triton = None


if triton is not None:
    _CONFIGS = [
        triton.Config({"BLOCK_N": n, "BLOCK_K": k, "SPLIT_K": s}, num_warps=w, num_stages=st)
        for n, k, s, w, st in [
            (16, 512, 1, 4, 4),
            (32, 256, 1, 4, 4),
            (32, 512, 1, 4, 3),
            (64, 256, 1, 4, 4),
            (32, 512, 1, 8, 4),
            (64, 512, 1, 8, 3),
            (16, 1024, 1, 4, 3),
            (32, 1024, 1, 8, 3),
            (16, 512, 2, 4, 4),
            (16, 512, 2, 8, 4),
            (32, 512, 2, 8, 4),
            (64, 256, 2, 8, 4),
            (16, 1024, 2, 8, 3),
            (16, 256, 4, 4, 4),
            (32, 256, 4, 4, 4),
            (16, 512, 4, 8, 3),
            (16, 256, 8, 4, 4),
        ]
    ]

    # A Triton kernel: untyped by nature (pointers and constexprs), hence the ignores.
    @triton.autotune(configs=_CONFIGS, key=["N", "K"], reset_to_zero=["y_ptr"])  # type: ignore[untyped-decorator]
    @triton.jit  # type: ignore[untyped-decorator]
    def _w8_matvec(  # type: ignore[no-untyped-def]
        x_ptr, w_ptr, s_ptr, y_ptr, M, N, stride_xm, stride_ym,
        K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr,
    ):  # fmt: skip
        pid_n, pid_k = tl.program_id(0), tl.program_id(1)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_m = tl.arange(0, 16)
        rows, cols = offs_m < M, offs_n < N
        acc = tl.zeros([16, BLOCK_N], tl.float32)
        per_split: tl.constexpr = K // SPLIT_K
        for step in range(per_split // BLOCK_K):
            offs_k = pid_k * per_split + step * BLOCK_K + tl.arange(0, BLOCK_K)
            x = tl.load(
                x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :], mask=rows[:, None], other=0.0
            )
            w = tl.load(w_ptr + offs_n[:, None] * K + offs_k[None, :], mask=cols[:, None])
            acc += tl.dot(x, tl.trans(w.to(tl.bfloat16)))
        acc *= tl.load(s_ptr + offs_n, mask=cols, other=0.0)[None, :]
        out = y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :]
        tl.atomic_add(out, acc, mask=rows[:, None] & cols[None, :])


@torch.library.custom_op("lookout::w8_linear", mutates_args=())
def _w8_linear_op(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x [M <= 16, K] bf16 times the 1-byte `weight` [N, K] with per-row `scale` -> [M, N]."""
    rows, n = x.shape[0], weight.shape[0]
    out = torch.zeros((rows, n), device=x.device, dtype=torch.float32)

    def grid(meta: dict[str, Any]) -> tuple[int, int]:
        return (triton.cdiv(n, meta["BLOCK_N"]), meta["SPLIT_K"])

    _w8_matvec[grid](x, weight, scale, out, rows, n, x.stride(0), out.stride(0), K=x.shape[1])
    return out.to(x.dtype)


@_w8_linear_op.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor) -> Any:
    return x.new_empty((x.shape[0], weight.shape[0]))


def quantize_weight(weight: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A [N, K] weight as (1-byte values, float32 scale per row) of `kind` 'int8' or 'fp8'."""
    if kind not in KINDS:
        raise ValueError(f"unknown weight quantisation {kind!r}: one of {', '.join(KINDS)}")
    wide = weight.detach().float()
    amax = wide.abs().amax(dim=1).clamp(min=1e-12)
    if kind == "int8":
        scale = amax / 127.0
        values = (wide / scale[:, None]).round().clamp(-127, 127).to(torch.int8)
    else:
        scale = amax / torch.finfo(torch.float8_e4m3fn).max
        values = (wide / scale[:, None]).to(torch.float8_e4m3fn)
    return values.contiguous(), scale.contiguous()


class WeightOnlyLinear(nn.Module):
    """A linear layer whose weight is stored in one byte per value (see the module doc)."""

    weight: torch.Tensor
    scale: torch.Tensor

    def __init__(self, linear: nn.Linear, kind: str) -> None:
        super().__init__()
        values, scale = quantize_weight(linear.weight, kind)
        self.kind = kind
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", values)
        self.register_buffer("scale", scale)
        self.bias = linear.bias
        on_cuda = values.device.type == "cuda"
        self.use_kernel = triton is not None and on_cuda and self.in_features % 512 == 0

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        """The weight widened back to `dtype` (what the kernel multiplies by, in effect)."""
        return (self.weight.to(torch.float32) * self.scale[:, None]).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features
        if self.use_kernel and rows <= MAX_KERNEL_ROWS and x.dtype == torch.bfloat16:
            flat = x.reshape(rows, self.in_features)
            y: torch.Tensor = _w8_linear_op(flat, self.weight, self.scale)
            y = y.view(*x.shape[:-1], self.out_features)
        else:
            y = F.linear(x, self.dequantized(x.dtype))
        return y if self.bias is None else y + self.bias


def quantize_decoder(layers: list[Any], kind: str) -> Callable[[], None]:
    """Swap every projection of `layers` for a WeightOnlyLinear of `kind`; returns a function
    that puts the original layers back (the originals are kept alive until then)."""
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    for layer in layers:
        for owner in (layer.self_attn, layer.mlp):
            for name in PROJECTIONS:
                original = getattr(owner, name, None)
                if isinstance(original, nn.Linear):
                    setattr(owner, name, WeightOnlyLinear(original, kind))
                    swapped.append((owner, name, original))

    def restore() -> None:
        for owner, name, original in swapped:
            setattr(owner, name, original)

    return restore
