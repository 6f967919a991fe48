"""Where a batched round's time to the first chunk goes: the stages of
`MiniCPMoEngine.stream_batch` for N sources of 4 frames, each ending with a CUDA sync.

Stages: inputs (frames to patches on the GPU, prompt ids), vision (one SigLIP + resampler
pass over every source's frames), merge (each prompt's embeddings with its vision tokens),
joint prefill (`admit_together`: one forward for all prompts into their slots), and one
decode step over the batch (a graph replay); beside them, one prompt's prefill through the
single decoder's CUDA-graph buckets. The decode graphs are captured without compiling (the
step's speed is in bench/gpu_batch.py), which keeps the load short. Medians of --reps.

    python bench/gpu_batch_stages.py --remote-code DIR [--sources 1,4,8] [--json F]
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gpu_cycle import DEVICE, bench_header, checkpoint_parser  # noqa: E402
from bench.gpu_stages import scene_frames, sync, window  # noqa: E402
from shared.settings import Settings  # noqa: E402
from worker.engines import minicpmo_text as text  # noqa: E402
from worker.engines.base import compose_prompt  # noqa: E402
from worker.engines.fast_decode_batch_prefill import admit_together  # noqa: E402
from worker.engines.minicpmo import MiniCPMoEngine  # noqa: E402
from worker.engines.minicpmo_inputs import device_inputs  # noqa: E402


def timed(work: Callable[[], Any]) -> tuple[Any, float]:
    sync()
    started = time.perf_counter()
    result = work()
    sync()
    return result, (time.perf_counter() - started) * 1000


@torch.inference_mode()
def round_stages(engine: MiniCPMoEngine, count: int) -> dict[str, float]:
    frames = scene_frames(4)
    request = window(frames, 128)
    tokenizer = engine.processor.tokenizer
    prompt = text.build_prompt_text(tokenizer, len(frames), compose_prompt(request))
    inputs, t_inputs = timed(
        lambda: [
            device_inputs(engine.processor, prompt, frames, engine.device) for _ in range(count)
        ]
    )
    merged = {
        "pixel_values": [p for data in inputs for p in data["pixel_values"]],
        "tgt_sizes": [t for data in inputs for t in data["tgt_sizes"]],
    }
    vision, t_vision = timed(lambda: engine.model.get_vision_embedding(merged))
    embeds, t_merge = timed(
        lambda: [
            text.embed(engine.model, {**data, "vision_hidden_states": [states]})
            for data, states in zip(inputs, vision, strict=True)
        ]
    )
    decoder = engine.batched.decoder
    slots = list(range(count))
    _, t_joint = timed(lambda: admit_together(decoder, slots, embeds))
    size = decoder.size_for(count - 1)
    _, t_step = timed(lambda: decoder.launch(size))
    for slot in slots:
        decoder.release(slot)
    _, t_single = timed(lambda: engine.decoder.prefiller.prefill(embeds[0]))
    return {
        "inputs_ms": t_inputs,
        "vision_ms": t_vision,
        "merge_ms": t_merge,
        "joint_prefill_ms": t_joint,
        "decode_step_ms": t_step,
        "one_prompt_graph_prefill_ms": t_single,
        "prompt_tokens": float(embeds[0].shape[1]),
    }


def main() -> int:
    parser = checkpoint_parser(__doc__)
    parser.add_argument(
        "--sources", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 8]
    )
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    result = bench_header(args)
    settings = Settings(
        engine="minicpmo",
        model_path=str(args.checkpoint),
        engine_device=DEVICE,
        compile_decode=False,
        max_batch=max(args.sources),
    )
    engine = MiniCPMoEngine(settings)
    _, result["load_ms"] = timed(engine.load)
    print(json.dumps(result), flush=True)
    rows = []
    for count in args.sources:
        round_stages(engine, count)  # warm-up: first use of each shape
        runs = [round_stages(engine, count) for _ in range(args.reps)]
        row = {"sources": count, **{k: statistics.median(r[k] for r in runs) for k in runs[0]}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    result["rows"] = rows
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
