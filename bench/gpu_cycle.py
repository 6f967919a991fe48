"""GPU cycle benchmark: MiniCPM-o-4.5-shaped model, random weights, the engine's own decode.

No weights can be downloaded here, so the model is a stand-in of MiniCPM-o 4.5's shape:
SigLIP-so400m vision at 448 px (27 layers, hidden 1152), a resampler to 64 tokens per frame,
and Qwen3-8B (36 layers, hidden 4096, 32 heads, 8 KV heads, vocab 151748) in bf16. It offers
`get_vllm_embedding` and `llm` as the real model does, so the bench drives
`worker.engines.minicpmo_text` (vision+prefill+fast decode) exactly as the engine does, and
HF `generate()` on the same embeddings as the baseline, in the same run.

    python bench/gpu_cycle.py                 # H100: 1, 4, 8 frames, 128 new tokens
    python bench/gpu_cycle.py --tiny --device cpu   # a seconds-long smoke run of the code

Prints one table (median of --reps runs) and writes --json if given.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.engines import minicpmo_text  # noqa: E402
from worker.engines.fast_decode import SamplingParams, build_fast_decoder  # noqa: E402
from worker.engines.fast_decode_prefill import DEFAULT_BUCKETS  # noqa: E402

FULL = {
    "llm": dict(
        hidden_size=4096,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        intermediate_size=12288,
        vocab_size=151748,
        rope_theta=1_000_000.0,
        max_position_embeddings=40960,
    ),
    "vision": dict(
        hidden_size=1152,
        num_hidden_layers=27,
        num_attention_heads=16,
        intermediate_size=4304,
        patch_size=14,
        image_size=448,
    ),
    "text_tokens": 196,  # chat template, context and instruction: ~460 tokens at 4 frames
}
TINY = {
    "llm": dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=128,
        vocab_size=1000,
        max_position_embeddings=4096,
    ),
    "vision": dict(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        patch_size=14,
        image_size=56,
    ),
    "text_tokens": 40,
}
QUERIES = 64  # MiniCPM-o's resampler: 64 tokens per image slice


class Resampler(nn.Module):
    """Stand-in of MiniCPM-o's resampler: 64 learned queries cross-attend the patches."""

    def __init__(self, dim: int, kv_dim: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(QUERIES, dim) * 0.02)
        self.kv_proj = nn.Linear(kv_dim, dim, bias=False)
        self.attn = nn.MultiheadAttention(dim, max(1, dim // 128), batch_first=True)
        self.ln_post = nn.LayerNorm(dim)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        kv = self.kv_proj(patches)
        q = self.query.unsqueeze(0).expand(patches.shape[0], -1, -1)
        out: torch.Tensor = self.ln_post(self.attn(q, kv, kv, need_weights=False)[0])
        return out


class MiniCPMoShaped(nn.Module):
    """Stand-in of MiniCPM-o 4.5 (random weights): `vpm`, `resampler`, `llm`, and
    `get_vllm_embedding(data)` with the real method's contract (embeddings, vision states)."""

    def __init__(self, shape: dict[str, Any]) -> None:
        super().__init__()
        tf: Any = importlib.import_module("transformers")  # untyped: keep it Any
        self.llm = tf.Qwen3ForCausalLM(tf.Qwen3Config(**shape["llm"], tie_word_embeddings=False))
        self.vpm = tf.SiglipVisionModel(tf.SiglipVisionConfig(**shape["vision"]))
        self.resampler = Resampler(shape["llm"]["hidden_size"], shape["vision"]["hidden_size"])

    def get_vllm_embedding(self, data: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        patches = self.vpm(pixel_values=data["pixel_values"]).last_hidden_state
        vision = self.resampler(patches)  # [frames, 64, hidden]
        embeds = self.llm.model.embed_tokens(data["input_ids"])
        for frame, (start, end) in enumerate(data["image_bound"]):
            embeds[0, start:end] = vision[frame]
        return embeds, vision


def window_inputs(shape: dict[str, Any], frames: int, device: torch.device) -> dict[str, Any]:
    """A prompt laid out as MiniCPM-o's: per frame <image> 64 slots </image>, then text."""
    vocab, size = shape["llm"]["vocab_size"], shape["vision"]["image_size"]
    bounds, cursor = [], 0
    for _ in range(frames):
        bounds.append((cursor + 1, cursor + 1 + QUERIES))
        cursor += QUERIES + 2
    length = cursor + shape["text_tokens"]
    return {
        "input_ids": torch.randint(0, vocab, (1, length), device=device),
        "pixel_values": torch.randn(frames, 3, size, size, device=device, dtype=torch.bfloat16),
        "image_bound": bounds,
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_stream(
    model: Any, inputs: dict[str, Any], decoder: Any, new_tokens: int, device: torch.device
) -> dict[str, float]:
    """One window through the engine's text path; vision ms, TTFT ms, decode tok/s."""
    params = SamplingParams(temperature=0.0)
    sync(device)
    start = time.perf_counter()
    embeds = minicpmo_text.embed(model, inputs)
    sync(device)
    vision = time.perf_counter() - start
    first = last = 0.0
    count = 0
    ids = minicpmo_text.token_ids(
        model, embeds, decoder, new_tokens, params, frozenset(), threading.Event()
    )
    for _ in ids:  # each id is on the host: the GPU is done with it
        count += 1
        last = time.perf_counter()
        if count == 1:
            first = last
    return {
        "vision_ms": vision * 1000,
        "ttft_ms": (first - start) * 1000,
        "tok_s": (count - 1) / (last - first) if count > 1 else 0.0,
        "tokens": float(count),
    }


def leading_agreement(model: Any, inputs: dict[str, Any], decoder: Any, count: int) -> int:
    """How many leading greedy tokens the fast path and HF generate() agree on."""
    embeds = minicpmo_text.embed(model, inputs)
    params, stop, cancel = SamplingParams(temperature=0.0), frozenset[int](), threading.Event()
    fast = list(minicpmo_text.token_ids(model, embeds, decoder, count, params, stop, cancel))
    slow = list(minicpmo_text.token_ids(model, embeds, None, count, params, stop, cancel))
    return next(
        (i for i, (a, b) in enumerate(zip(fast, slow, strict=False)) if a != b),
        min(len(fast), len(slow)),
    )


def plain_generate_tok_s(
    model: Any, inputs: dict[str, Any], count: int, device: torch.device
) -> float:
    """HF generate() without a streamer: (count - 1) tokens over the time beyond 1 token."""
    embeds = minicpmo_text.embed(model, inputs)
    times = {}
    for tokens in (1, count):
        sync(device)
        start = time.perf_counter()
        model.llm.generate(
            inputs_embeds=embeds,
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=False,
            pad_token_id=0,
        )
        sync(device)
        times[tokens] = time.perf_counter() - start
    return (count - 1) / (times[count] - times[1])


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    import transformers

    device = torch.device(args.device)
    shape = TINY if args.tiny else FULL
    print(f"torch {torch.__version__}, transformers {transformers.__version__}", flush=True)
    torch.manual_seed(0)
    with torch.device(device):
        model = MiniCPMoShaped(shape).to(torch.bfloat16).eval()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()  # the fp32 build is not what serving holds
    decoders = {}
    for variant in args.variants:
        started = time.perf_counter()
        use_graph = device.type == "cuda"
        decoder = build_fast_decoder(
            model, args.max_len, use_graph, variant == "compile", prefill_buckets=DEFAULT_BUCKETS
        )
        assert decoder is not None, "the fast decoder must apply to a Qwen3 LLM"
        if device.type == "cuda":
            torch.cuda.synchronize()
        print(
            f"{variant}: {decoder.mode}, built in {time.perf_counter() - started:.1f} s", flush=True
        )
        decoders[variant] = decoder
    first = decoders[args.variants[0]]
    agree = leading_agreement(model, window_inputs(shape, 1, device), first, 16)
    print(f"greedy agreement with generate(): {agree}/16 leading tokens", flush=True)
    rows = []
    for frames in args.frames:
        inputs = window_inputs(shape, frames, device)
        timed_stream(model, inputs, None, 4, device)  # warm-up (cuBLAS, allocator)
        hf = [
            timed_stream(model, inputs, None, args.hf_tokens, device) for _ in range(args.hf_reps)
        ]
        plain = plain_generate_tok_s(model, inputs, args.hf_tokens, device)
        for decoder in decoders.values():
            timed_stream(model, inputs, decoder, 8, device)
            runs = args.reps
            fast = [
                timed_stream(model, inputs, decoder, args.new_tokens, device) for _ in range(runs)
            ]
            row = {
                "variant": decoder.mode,
                "frames": frames,
                "prompt_tokens": int(inputs["input_ids"].shape[1]),
                "vision_ms": statistics.median(r["vision_ms"] for r in fast),
                "ttft_ms": statistics.median(r["ttft_ms"] for r in fast),
                "tok_s": statistics.median(r["tok_s"] for r in fast),
                "tok_s_min": min(r["tok_s"] for r in fast),
                "tok_s_max": max(r["tok_s"] for r in fast),
                "hf_ttft_ms": statistics.median(r["ttft_ms"] for r in hf),
                "hf_tok_s": statistics.median(r["tok_s"] for r in hf),
                "hf_plain_tok_s": plain,
                "greedy_agreement_16": agree,
            }
            row["speedup"] = row["tok_s"] / row["hf_tok_s"] if row["hf_tok_s"] else 0.0
            if device.type == "cuda":
                row["vram_alloc_gib"] = torch.cuda.max_memory_allocated() / 1024**3
                row["vram_reserved_gib"] = torch.cuda.memory_reserved() / 1024**3
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        "| frames | prompt tok | vision ms | TTFT ms | decode tok/s | HF TTFT ms "
        "| HF generate() tok/s (no streamer) | speed-up | VRAM alloc/reserved GiB | decode |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        vram = f"{r.get('vram_alloc_gib', 0):.1f} / {r.get('vram_reserved_gib', 0):.1f}"
        print(
            f"| {r['frames']} | {r['prompt_tokens']} | {r['vision_ms']:.1f} | {r['ttft_ms']:.1f} "
            f"| {r['tok_s']:.1f} | {r['hf_ttft_ms']:.1f} "
            f"| {r['hf_tok_s']:.1f} ({r['hf_plain_tok_s']:.1f}) "
            f"| {r['speedup']:.2f}x | {vram} | {r['variant']} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shape (CPU smoke run)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--frames", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 8]
    )
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--hf-tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--hf-reps", type=int, default=2)
    parser.add_argument("--max-len", type=int, default=2048)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--variants",
        type=lambda s: s.split(","),
        default=["graph"],
        help="graph (CUDA graph of the eager step), compile (torch.compile, then graph)",
    )
    args = parser.parse_args()
    with torch.inference_mode():
        rows = run(args)
    print_table(rows)
    if args.json:
        args.json.write_text(
            json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows})
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
