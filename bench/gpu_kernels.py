"""Kernel benchmark of the decode path's parts at Qwen3-8B's shapes (random data, no model):
length-aware decode attention against the masked attention over the whole cache, and the
weight-only INT8/FP8 matrix-vector kernel against bf16 `F.linear` (cuBLAS), each checked for
its numbers against the reference first. Times are CUDA-graph replays (no launch overhead).

    python bench/gpu_kernels.py [--json out.json]

Per-token projections: 36 layers of q, k, v, o, gate, up, down plus the bf16 LM head.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.engines.decode_attention import decode_attention  # noqa: E402
from worker.engines.fast_decode_quant import _w8_linear_op, quantize_weight  # noqa: E402

LAYERS, HIDDEN, INTER, HEADS, KV, HEAD_DIM, VOCAB = 36, 4096, 12288, 32, 8, 128, 151748
PROJ = [(4096, HIDDEN), (1024, HIDDEN), (1024, HIDDEN), (HIDDEN, 4096), (INTER, HIDDEN)] + [
    (INTER, HIDDEN),
    (HIDDEN, INTER),
]


def graph_ms(fn: Any, reps: int = 20) -> float:
    """Milliseconds per call of `fn`, as the median of replays of a graph of `reps` calls."""
    import triton.testing

    fn()  # autotune / warm-up outside the capture
    torch.cuda.synchronize()
    return float(triton.testing.do_bench_cudagraph(fn, rep=200)) / 1.0


def attention_rows() -> list[dict[str, Any]]:
    rows = []
    for max_len in (2048, 8192):
        for batch in (1, 8):
            kc = torch.randn(8, KV, max_len, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
            vc = torch.randn_like(kc)
            q = torch.randn(batch, HEADS, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
            lengths = torch.randint(1, 600, (batch,), device="cuda")
            lengths[0] = 600
            ref = decode_attention(q, kc, vc, lengths, length_aware=False).float()
            out = decode_attention(q, kc, vc, lengths, length_aware=True).float()
            err = float((ref - out).abs().max())
            masked = graph_ms(partial(decode_attention, q, kc, vc, lengths, False))
            aware = graph_ms(partial(decode_attention, q, kc, vc, lengths, True))
            rows.append(
                {"max_len": max_len, "batch": batch, "max_err": err,
                 "masked_ms_per_token": masked * LAYERS, "aware_ms_per_token": aware * LAYERS}
            )  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    return rows


def linear_rows() -> list[dict[str, Any]]:
    rows = []
    for rows_m in (1, 8):
        total = {"bf16": 0.0, "int8": 0.0, "fp8": 0.0}
        errors = {"int8": 0.0, "fp8": 0.0}
        for n, k in PROJ:
            w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02
            x = torch.randn(rows_m, k, device="cuda", dtype=torch.bfloat16)
            total["bf16"] += graph_ms(partial(F.linear, x, w))
            for kind in ("int8", "fp8"):
                values, scale = quantize_weight(w, kind)
                wide = (values.float() * scale[:, None]).to(torch.bfloat16)
                ref = F.linear(x, wide).float()
                out = _w8_linear_op(x, values, scale).float()
                errors[kind] = max(errors[kind], float((ref - out).abs().max() / ref.abs().max()))
                total[kind] += graph_ms(partial(_w8_linear_op, x, values, scale))
        head = torch.randn(VOCAB, HIDDEN, device="cuda", dtype=torch.bfloat16) * 0.02
        xh = torch.randn(rows_m, HIDDEN, device="cuda", dtype=torch.bfloat16)
        head_ms = graph_ms(partial(F.linear, xh, head))
        del head
        row = {"rows": rows_m, "lm_head_ms": head_ms, "kernel_rel_err": errors}
        for kind, ms in total.items():
            per_token = ms * LAYERS + head_ms
            row[kind] = {"ms_per_token": per_token, "tok_s_ceiling": 1000 / per_token}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    result["attention"] = attention_rows()
    result["linear"] = linear_rows()
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
