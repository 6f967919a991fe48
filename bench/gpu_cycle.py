"""GPU cycle benchmark: MiniCPM-o 4.5 through the engine itself, on a synthetic checkpoint.

No weights can be downloaded here, so the checkpoint is `lookout models synth --size full`:
the model's own remote code at the published shapes (Qwen3-8B, SigLIP so400m, Whisper-medium
encoder), random bf16 weights. It is loaded by `MiniCPMoEngine.load()` and driven through
`stream()` from BGR frames to text chunks, with the production sampling settings (so the
processor, the upload, the vision encoder, detokenisation and sampling are all inside the
timing). HF's path (`generate()` on the same engine, the fast decoder switched off) is
measured in the same run as the baseline.

    python bench/gpu_cycle.py --remote-code DIR                 # 1, 4, 8 frames; 128 tokens
    python bench/gpu_cycle.py --remote-code DIR --load-only     # time a load (warm cache)

DIR holds MiniCPM-o 4.5's remote code (a downloaded checkpoint's folder will do). The
checkpoint is built once at --checkpoint (default /dev/shm/minicpmo_full) and reused.
Prints tables of medians over --reps runs; --json writes them.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gpu_stages import (  # noqa: E402
    medians,
    peak_gib,
    scene_frames,
    stage_times,
    stream_times,
    window,
)
from shared.settings import Settings  # noqa: E402
from worker.engines.fast_decode_check import teacher_forced  # noqa: E402
from worker.engines.minicpmo import MiniCPMoEngine  # noqa: E402
from worker.models_synth import SynthPlan, build  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def ensure_checkpoint(args: argparse.Namespace) -> float:
    """Build the synthetic checkpoint unless it exists; seconds spent building."""
    if args.checkpoint.exists():
        return 0.0
    started = time.perf_counter()
    build(SynthPlan(args.remote_code, args.checkpoint, args.size, device=DEVICE))
    gc.collect()  # the built model's cycles hold 17 GiB of the GPU until collected
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    return time.perf_counter() - started


def checkpoint_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments of every GPU bench: the model's remote code and the synthetic checkpoint."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--remote-code", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, default=Path("/dev/shm/minicpmo_full"))
    parser.add_argument("--size", default="full", choices=("tiny", "full"))
    return parser


def bench_header(args: argparse.Namespace) -> dict[str, Any]:
    """What every GPU bench's result starts with: the card, torch, the checkpoint's build."""
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {"device": device, "torch": torch.__version__, "build_s": ensure_checkpoint(args)}


def load(args: argparse.Namespace, **settings: Any) -> tuple[MiniCPMoEngine, float]:
    """The engine on the checkpoint as the worker loads it (`settings` on top); load seconds."""
    made = Settings(
        engine="minicpmo",
        model_path=str(args.checkpoint),
        compile_decode=not getattr(args, "no_compile", False),
        decode_max_len=args.max_len,
        engine_device=DEVICE,  # cpu: a smoke run of the bench itself, --size tiny
        **settings,
    )
    engine = MiniCPMoEngine(made)
    started = time.perf_counter()
    engine.load()
    return engine, time.perf_counter() - started


def fast_rows(engine: MiniCPMoEngine, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for count in args.frames:
        frames = scene_frames(count)
        for _ in range(2):  # warm-up: first use of each shape (allocator, cuDNN/cuBLAS plans)
            stream_times(engine, window(frames, 8))
        stages = medians([stage_times(engine, frames) for _ in range(args.reps)])
        runs = medians(
            [stream_times(engine, window(frames, args.new_tokens)) for _ in range(args.reps)]
        )
        rows.append({"frames": count, **stages, **runs, "peak_gib": peak_gib()})
    return rows


def hf_row(engine: MiniCPMoEngine, args: argparse.Namespace) -> dict[str, Any]:
    """HF's path on the same engine: generate() streaming, fast decoder off."""
    decoder, engine.decoder = engine.decoder, None
    frames = scene_frames(4)
    try:
        stream_times(engine, window(frames, 4))
        runs = [stream_times(engine, window(frames, args.hf_tokens)) for _ in range(args.hf_reps)]
    finally:
        engine.decoder = decoder
    return {"frames": 4, **medians(runs)}


def host_sampling_row(engine: MiniCPMoEngine, args: argparse.Namespace) -> dict[str, Any]:
    """The same stream with sampling on the host between graph replays (the previous path):
    the captured step keeps its settings, so other settings take the host loop."""
    from worker.engines.fast_decode import SamplingParams

    sampled, engine.decoder.sampled = engine.decoder.sampled, None
    frames = scene_frames(4)
    try:
        runs = [stream_times(engine, window(frames, args.new_tokens)) for _ in range(args.reps)]
    finally:
        engine.decoder.sampled = sampled
    assert sampled is None or sampled.params == SamplingParams(engine.settings.decode_temperature)
    return {"frames": 4, **medians(runs)}


def agreement(engine: MiniCPMoEngine) -> dict[str, Any]:
    from worker.engines import minicpmo_text as text
    from worker.engines.transformers_engine import frames_to_pil

    frames = scene_frames(4)
    tokenizer = engine.processor.tokenizer
    prompt = text.build_prompt_text(tokenizer, 4, "Describe what is happening.")
    inputs = text.processor_inputs(engine.processor, prompt, frames_to_pil(frames), engine.device)
    embeds = text.embed(engine.model, inputs)
    forced = torch.tensor(tokenizer.encode(" A green box slides to the right across a grey wall."))
    return dataclasses.asdict(teacher_forced(engine.model.llm, engine.decoder, embeds, forced))


def warm_load_seconds(args: argparse.Namespace) -> float:
    """A second process loads the same checkpoint: compile and autotune caches now warm."""
    command = [sys.executable, __file__, "--load-only", "--checkpoint", str(args.checkpoint)]
    command += ["--remote-code", str(args.remote_code), "--max-len", str(args.max_len)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["load_s"])


def print_tables(result: dict[str, Any]) -> None:
    print(
        f"\n{result['device']}; {result['engine']['decode']} decode, {result['engine']['prefill']} prefill"
    )
    print(
        f"build {result['build_s']:.0f} s; load cold {result['load_s']:.1f} s, warm {result.get('warm_load_s', 0):.1f} s"
    )
    print(
        "\n| frames | prompt tok | inputs (CPU processor path) | vision | merge | prefill "
        "| 1st token | TTFT ms | 1st chunk ms | decode tok/s | peak GiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in result["fast"]:
        print(
            f"| {r['frames']} | {r['prompt_tokens']:.0f} | {r['inputs']:.1f} ({r['cpu_inputs']:.1f}) "
            f"| {r['vision']:.1f} | {r['merge']:.1f} | {r['prefill']:.1f} "
            f"| {r['first_token']:.1f} | {r['total']:.1f} | {r['first_chunk_ms']:.1f} "
            f"| {r['tok_s']:.1f} | {r['peak_gib']:.1f} |"
        )
    host = result["host_sampling"]
    print(f"\nsampling on the host between steps, 4 frames: {host['tok_s']:.1f} tok/s")
    hf = result["hf"]
    print(
        f"\nHF generate() path, 4 frames: first chunk {hf['first_chunk_ms']:.0f} ms, {hf['tok_s']:.1f} tok/s"
    )
    print(f"teacher-forced agreement: {result['agreement']}")


def main() -> int:
    parser = checkpoint_parser(__doc__)
    parser.add_argument(
        "--frames", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 8]
    )
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--hf-tokens", type=int, default=32)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--hf-reps", type=int, default=3)
    parser.add_argument("--max-len", type=int, default=2048)
    parser.add_argument("--no-compile", action="store_true", help="COMPILE_DECODE=false")
    parser.add_argument("--no-warm-load", action="store_true")
    parser.add_argument("--load-only", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:  # a cold cache; the warm load reuses it
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="lookout-inductor-")
    build_s = ensure_checkpoint(args)
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()  # the build's own peak is not the engine's
    engine, load_s = load(args)
    if args.load_only:
        print(json.dumps({"load_s": load_s}))
        return 0
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu",
        "engine": engine.info().extra,
        "build_s": build_s,
        "load_s": load_s,
    }
    measures = (("fast", fast_rows), ("host_sampling", host_sampling_row), ("hf", hf_row))
    for name, measure in (*measures, ("agreement", lambda e, _: agreement(e))):
        result[name] = measure(engine, args)
        print(json.dumps({name: result[name]}, default=str))  # as it comes: a crash keeps it
    if not args.no_warm_load:
        result["warm_load_s"] = warm_load_seconds(args)
    print_tables(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
