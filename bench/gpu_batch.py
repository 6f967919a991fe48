"""GPU batching benchmark: many sources on one GPU, batched against taking turns; decode with
length-aware attention at two cache lengths; weight-only INT8/FP8 with its logit error.

Same synthetic MiniCPM-o 4.5 checkpoint and engine as bench/gpu_cycle.py. Parts (--parts):

- sources: 1, 2, 4, 8 sources of 4 frames each, all due at once. Baseline, same run: the
  engine's own `stream()` per source in turn (today's worker). Batched: a ContinuousBatch
  over 8 slots, each source's vision + prefill done when it is admitted, one decode step for
  all busy slots. Per source: frames -> first chunk (from the moment all are due); aggregate
  tok/s (all tokens / time to the last), and decode-only tok/s once all sources are in.
- length: batch-1 decode tok/s at DECODE_MAX_LEN 2048 and 8192, length-aware attention and
  the masked attention over the whole cache (the single decoder's way) beside it.
- quant: batch-1 decode tok/s with the LLM's projections in INT8 and FP8 (bf16 beside it)
  and the teacher-forced logit error of each against the bf16 model's own forward.

    python bench/gpu_batch.py --remote-code DIR [--parts sources,length,quant] [--json F]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gpu_batch_profile import profile_part  # noqa: E402
from bench.gpu_cycle import bench_header, checkpoint_parser, load  # noqa: E402
from bench.gpu_stages import scene_frames, sync, window  # noqa: E402
from worker.engines import minicpmo_text as text  # noqa: E402
from worker.engines.base import compose_prompt  # noqa: E402
from worker.engines.decode_attention import length_aware_available  # noqa: E402
from worker.engines.fast_decode_batch import BatchDecoder  # noqa: E402
from worker.engines.fast_decode_batch_loop import BatchRequest, ContinuousBatch  # noqa: E402
from worker.engines.fast_decode_check import compare, reference_logits  # noqa: E402
from worker.engines.fast_decode_params import SamplingParams  # noqa: E402
from worker.engines.fast_decode_stream import TextAssembler  # noqa: E402

FORCED = " A green box slides to the right across a grey wall while a person waits."


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def allocated() -> int:
    return torch.cuda.memory_allocated() if torch.cuda.is_available() else 0


def gib(value: float) -> float:
    return value / 1024**3


def make_batch(engine: Any, slots: int, max_len: int, **kwargs: Any) -> tuple[BatchDecoder, float]:
    started = time.perf_counter()
    params = SamplingParams(temperature=engine.settings.decode_temperature)
    cuda = engine.device.type == "cuda"
    decoder = BatchDecoder(engine.decoder, slots, max_len, params, cuda, cuda, **kwargs)
    return decoder, time.perf_counter() - started


def embeds_for(engine: Any, frames: list[Any], new_tokens: int) -> Any:
    request = window(frames, new_tokens)
    prompt = text.build_prompt_text(
        engine.processor.tokenizer, len(frames), compose_prompt(request)
    )
    return text.embed(engine.model, engine._inputs(prompt, request))


def turn_taking(engine: Any, count: int, new_tokens: int) -> dict[str, Any]:
    """Today's worker: each due source's window through `stream()`, one after another."""
    frames = scene_frames(4)
    sync()
    started = time.perf_counter()
    firsts, tokens = [], 0
    for _ in range(count):
        first = 0.0
        for chunk in engine.stream(window(frames, new_tokens), threading.Event()):
            first = first or time.perf_counter() - started
            tokens += chunk.tokens
        firsts.append(first * 1000)
    total = time.perf_counter() - started
    return {"first_chunk_ms": firsts, "tokens": tokens, "agg_tok_s": tokens / total}


def batched(engine: Any, batch: ContinuousBatch, count: int, new_tokens: int) -> dict[str, Any]:
    """All `count` sources submitted at once to the continuous batch."""
    frames = scene_frames(4)
    requests = [
        BatchRequest(lambda: embeds_for(engine, frames, new_tokens), new_tokens, engine.stop_ids)
        for _ in range(count)
    ]
    assemblers = [TextAssembler(engine.processor.tokenizer) for _ in requests]
    firsts = [0.0] * count
    tokens = [0] * count
    all_in = 0.0
    tokens_at_all_in = 0
    sync()
    started = time.perf_counter()
    for request in requests:
        batch.submit(request)
    while not batch.idle():
        batch.iterate()
        now = time.perf_counter() - started
        if not all_in and batch.waiting.empty():
            all_in, tokens_at_all_in = now, sum(tokens)
        for index, request in enumerate(requests):
            while not request.ids.empty():
                token = request.ids.get_nowait()
                if token < 0 or token in request.stop_ids:
                    continue
                tokens[index] += 1
                if not firsts[index] and assemblers[index].add(token) is not None:
                    firsts[index] = now * 1000
    total = time.perf_counter() - started
    decode = (sum(tokens) - tokens_at_all_in) / (total - all_in) if total > all_in else 0.0
    return {
        "first_chunk_ms": [f or total * 1000 for f in firsts],
        "tokens": sum(tokens),
        "agg_tok_s": sum(tokens) / total,
        "decode_tok_s": decode,
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    firsts = [
        statistics.median(r["first_chunk_ms"][i] for r in runs)
        for i in range(len(runs[0]["first_chunk_ms"]))
    ]
    row = {"first_chunk_ms": firsts, "worst_first_chunk_ms": max(firsts)}
    for key in ("agg_tok_s", "decode_tok_s", "tokens"):
        if key in runs[0]:
            row[key] = statistics.median(r[key] for r in runs)
    return row


def sources_part(engine: Any, args: argparse.Namespace, result: dict[str, Any]) -> None:
    before = allocated()
    decoder, build_s = make_batch(engine, args.slots, args.max_len)
    result["batch_decoder"] = {"mode": decoder.mode, "build_s": build_s}
    result["vram_per_slot_gib"] = gib(decoder.bytes_per_slot())
    result["vram_batch_decoder_gib"] = gib(allocated() - before)
    emit(result, "batch_decoder", "vram_per_slot_gib", "vram_batch_decoder_gib")
    for policy, per_step in (("one per step", 1), ("all at once", args.slots)):
        loop = ContinuousBatch(decoder, admit_per_step=per_step)
        batched(engine, loop, 2, 16)  # warm-up
        rows = []
        for count in args.sources:
            base = (
                [turn_taking(engine, count, args.new_tokens) for _ in range(args.reps)]
                if per_step == 1
                else []
            )
            runs = [batched(engine, loop, count, args.new_tokens) for _ in range(args.reps)]
            row = {"sources": count, "batched": summarise(runs)}
            if base:
                row["turns"] = summarise(base)
            rows.append(row)
            print(json.dumps({policy: row}), flush=True)
        result[f"sources ({policy})"] = rows
    del decoder, loop
    free_memory()


def decode_rate(engine: Any, decoder: BatchDecoder, steps: int) -> float:
    """Batch-1 decode tok/s in slot 0 after a 4-frame prompt (graph replays, one sync)."""
    embeds = embeds_for(engine, scene_frames(4), 8)
    decoder.admit(0, embeds)
    for _ in range(5):
        decoder.launch(1)
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        decoder.launch(1)
    sync()
    decoder.release(0)
    return steps / (time.perf_counter() - started)


def length_part(engine: Any, args: argparse.Namespace, result: dict[str, Any]) -> None:
    rows = []
    aware_too = length_aware_available(engine.device)
    for max_len, aware in ((2048, aware_too), (8192, aware_too), (8192, False), (2048, False)):
        if True:
            decoder, build_s = make_batch(engine, 1, max_len, length_aware=aware)
            rate = statistics.median(decode_rate(engine, decoder, 256) for _ in range(3))
            rows.append(
                {"max_len": max_len, "length_aware": aware, "tok_s": rate, "build_s": build_s}
            )
            print(json.dumps(rows[-1]), flush=True)
            del decoder
            free_memory()
    result["length"] = rows


def forced_logits(decoder: BatchDecoder, embeds: Any, forced: Any) -> Any:
    decoder.admit(0, embeds)
    rows = [decoder.single.logits.clone().view(-1)]
    length = int(embeds.shape[1])
    for offset, token in enumerate(forced.view(-1)):
        position = torch.tensor([length + offset], device=decoder.device)
        rows.append(decoder.forced_logits(1, token.view(1).to(decoder.device), position).view(-1))
    decoder.release(0)
    return torch.stack(rows)


def quant_part(engine: Any, args: argparse.Namespace, result: dict[str, Any]) -> None:
    from worker.engines.fast_decode_quant import quantize_decoder

    embeds = embeds_for(engine, scene_frames(4), 8)
    forced = torch.tensor(engine.processor.tokenizer.encode(FORCED)).to(embeds.device)
    reference = reference_logits(engine.model.llm, embeds, forced)
    rows = []
    for kind in args.quant.split(","):
        restore = quantize_decoder(engine.decoder.layers, kind) if kind != "bf16" else None
        try:
            decoder, build_s = make_batch(engine, 1, args.max_len)
            rate = statistics.median(decode_rate(engine, decoder, 256) for _ in range(3))
            agreement = compare(reference, forced_logits(decoder, embeds, forced))
        finally:
            if restore is not None:
                restore()
        row = {
            "weights": kind,
            "tok_s": rate,
            "build_s": build_s,
            "max_abs_logit_diff": agreement.max_abs_diff,
            "max_ref_logit": float(reference.abs().max()),
            "top1_matches": agreement.top1_matches,
            "near_ties": agreement.near_ties,
            "mismatches": agreement.mismatches,
            "positions": agreement.positions,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        del decoder
        free_memory()
    result["quant"] = rows


def emit(result: dict[str, Any], *keys: str) -> None:
    print(json.dumps({k: result[k] for k in keys}, default=str), flush=True)


def main() -> int:
    parser = checkpoint_parser(__doc__)
    parser.add_argument("--parts", default="sources,length,quant")
    parser.add_argument(
        "--sources", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8]
    )
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--max-len", type=int, default=2048)
    parser.add_argument("--quant", default="bf16,int8,fp8", help="weights to measure")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.no_compile = False
    started = time.perf_counter()
    result = bench_header(args)
    engine, result["load_s"] = load(args)
    result["engine"] = engine.info().extra
    emit(result, "device", "build_s", "load_s", "engine")
    parts = {"sources": sources_part, "length": length_part, "quant": quant_part}
    parts["profile"] = profile_part  # bench/gpu_batch_profile.py
    for name in args.parts.split(","):
        try:
            parts[name](engine, args, result)
        except Exception:  # noqa: BLE001 (the other parts still run)
            traceback.print_exc()
            free_memory()
        if args.json:
            args.json.write_text(json.dumps(result, indent=2, default=str))
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
