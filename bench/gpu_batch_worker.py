"""Sources due at once through the engine's batched path, as the worker runs them (MAX_BATCH).

Same synthetic MiniCPM-o 4.5 checkpoint as bench/gpu_cycle.py; 1, 2, 4, 8 sources of 4 frames
each, all due at the same moment. Three ways, same run, same loaded engine:

- turns: the engine's `stream()` per source, one after another (MAX_BATCH=1, the baseline);
- admitted one by one: a ContinuousBatch over the engine's slots admitting one source per
  step, each with its own vision pass and prefill (the batched decode before this bench);
- engine batch: `MiniCPMoEngine.stream_batch` (what the worker calls for a round): one vision
  pass over every source's frames, one prefill forward for all prompts, then batched decode.

Per source: first chunk, from the moment all are due; aggregate tok/s (all tokens / time to
the last). Medians of --reps runs.

    python bench/gpu_batch_worker.py --remote-code DIR [--json F]
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gpu_batch import batched, summarise, turn_taking  # noqa: E402
from bench.gpu_cycle import bench_header, checkpoint_parser, load  # noqa: E402
from bench.gpu_stages import scene_frames, sync, window  # noqa: E402
from worker.engines.fast_decode_batch_loop import ContinuousBatch  # noqa: E402
from worker.engines.minicpmo import MiniCPMoEngine  # noqa: E402


def engine_batch(engine: MiniCPMoEngine, count: int, new_tokens: int) -> dict[str, Any]:
    """One round of `count` due sources through `stream_batch`."""
    frames = scene_frames(4)
    requests = [window(frames, new_tokens) for _ in range(count)]
    cancels = [threading.Event() for _ in range(count)]
    firsts = [0.0] * count
    tokens = 0
    sync()
    started = time.perf_counter()
    for item in engine.stream_batch(requests, cancels):
        if item.chunk is None:
            if item.error:
                raise RuntimeError(f"source {item.index} failed: {item.error}")
            continue
        tokens += item.chunk.tokens
        if not firsts[item.index]:
            firsts[item.index] = (time.perf_counter() - started) * 1000
    total = time.perf_counter() - started
    return {"first_chunk_ms": firsts, "tokens": tokens, "agg_tok_s": tokens / total}


def main() -> int:
    parser = checkpoint_parser(__doc__)
    parser.add_argument(
        "--sources", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8]
    )
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--max-len", type=int, default=2048)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    result = bench_header(args)
    engine, result["load_s"] = load(args, max_batch=args.slots)
    result["engine"] = engine.info().extra
    print(json.dumps(result), flush=True)
    one_by_one = ContinuousBatch(engine.batched.decoder, admit_per_step=1)
    batched(engine, one_by_one, 2, 16)  # warm-up of each way
    ways = {
        "turns": lambda n: turn_taking(engine, n, args.new_tokens),
        "one_by_one": lambda n: batched(engine, one_by_one, n, args.new_tokens),
        "engine_batch": lambda n: engine_batch(engine, n, args.new_tokens),
    }
    try:
        engine_batch(engine, 2, 16)
        engine_batch(engine, max(args.sources), 16)
    except Exception:  # noqa: BLE001 (the baselines still run)
        traceback.print_exc()
        del ways["engine_batch"]
    rows = []
    for count in args.sources:
        row: dict[str, Any] = {"sources": count}
        for name, way in ways.items():
            row[name] = summarise([way(count) for _ in range(args.reps)])
        rows.append(row)
        print(json.dumps(row), flush=True)
        result["rows"] = rows
        if args.json:
            args.json.write_text(json.dumps(result, indent=2, default=str))
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
