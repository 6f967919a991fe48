"""The `profile` part of bench/gpu_batch.py: where a batch-1 decode step's time goes, as GPU
time per kernel group (torch.profiler over graph replays) against the replays' wall time."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from bench.gpu_stages import scene_frames, sync

KERNEL_GROUPS = (
    ("attention", ("_split_kernel", "_combine_kernel")),
    ("int8/fp8 matvec", ("_w8_matvec",)),
    ("cuBLAS matvec", ("gemv", "gemm", "sm90_xmma", "cutlass", "nvjet")),
    ("sampling", ("topk", "sort", "radix", "softmax", "cumsum", "exponential", "argmax", "gather")),
    ("fused small ops (Inductor)", ("triton_",)),
)


def kernel_group(name: str) -> str:
    lowered = name.lower()
    for group, needles in KERNEL_GROUPS:
        if any(needle.lower() in lowered for needle in needles):
            return group
    return "other"


def profile_part(engine: Any, args: argparse.Namespace, result: dict[str, Any]) -> None:
    """Where a batch-1 step's time goes: GPU time per kernel group over 50 graph replays,
    against the wall time of those replays (the rest is gaps between kernels)."""
    from torch.profiler import ProfilerActivity, profile

    from bench.gpu_batch import embeds_for, free_memory, make_batch
    from worker.engines.fast_decode_quant import quantize_decoder

    rows = []
    for kind in args.quant.split(","):
        restore = quantize_decoder(engine.decoder.layers, kind) if kind != "bf16" else None
        try:
            decoder, _ = make_batch(engine, 1, args.max_len)
            decoder.admit(0, embeds_for(engine, scene_frames(4), 8))
            for _ in range(5):
                decoder.launch(1)
            sync()
            steps = 50
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                started = time.perf_counter()
                for _ in range(steps):
                    decoder.launch(1)
                sync()
                wall = (time.perf_counter() - started) * 1000 / steps
            decoder.release(0)
        finally:
            if restore is not None:
                restore()
        groups: dict[str, float] = {}
        kernels = 0
        for event in prof.key_averages():
            if event.device_type.name != "CUDA" or event.device_time_total <= 0:
                continue
            group = kernel_group(event.key)
            groups[group] = groups.get(group, 0.0) + event.device_time_total / 1000 / steps
            kernels += event.count
        row = {"weights": kind, "wall_ms_per_step": wall, "gpu_ms_per_step": sum(groups.values())}
        row.update({"kernels_per_step": kernels / steps, "groups_ms": groups})
        rows.append(row)
        print(json.dumps(row), flush=True)
        del decoder
        free_memory()
    result["profile"] = rows
