"""Timing helpers of bench/gpu_cycle.py: one window through the engine, stage by stage and
as a whole, on the engine's own objects (no copy of its logic beyond the stage split).

Stages of the text path to the first token (each ends with a CUDA sync, so its time is its
own): the model inputs (frames uploaded and made into patches on the device, prompt ids by
the processor's own code), the vision encoder + resampler (`get_vision_embedding`), merging
them into the prompt's embeddings, the prefill, and sampling the first token onto the host.
The baseline of the first stage, timed in the same run: the processor's own CPU path
(frames to PIL, the processor, the upload of its tensors).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from worker.engines import minicpmo_text as text
from worker.engines.base import EngineRequest, WindowFrame
from worker.engines.fast_decode import SamplingParams, sample
from worker.engines.transformers_engine import frames_to_pil


def scene_frames(count: int, width: int = 640, height: int = 360) -> list[WindowFrame]:
    """Camera-like BGR frames: a gradient, a moving block, some noise."""
    rng = np.random.default_rng(count)
    frames = []
    for index in range(count):
        ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
        image = np.broadcast_to(ramp, (height, width, 3)).copy()
        x = 40 + index * 30
        image[100:200, x : x + 80] = (30, 200, 60)
        image += rng.normal(0, 6, image.shape)
        frames.append(
            WindowFrame(seq=index, ts=float(index), image=image.clip(0, 255).astype(np.uint8))
        )
    return frames


def window(frames: list[WindowFrame], new_tokens: int) -> EngineRequest:
    return EngineRequest(
        source="bench",
        frames=frames,
        instruction="Describe what is happening in the video.",
        context=("A green box moved to the right.",),
        max_new_tokens=new_tokens,
    )


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(stages: dict[str, float], name: str, work: Callable[[], Any]) -> Any:
    sync()
    started = time.perf_counter()
    result = work()
    sync()
    stages[name] = (time.perf_counter() - started) * 1000
    return result


def stage_times(engine: Any, frames: list[WindowFrame]) -> dict[str, float]:
    """Milliseconds of each stage from frames to the first token (the engine's own calls),
    and, as the baseline of the first stage, the processor's own CPU path to the same inputs."""
    stages: dict[str, float] = {}
    tokenizer = engine.processor.tokenizer
    params = SamplingParams(temperature=engine.settings.decode_temperature)
    prompt = text.build_prompt_text(tokenizer, len(frames), "Describe what is happening.")
    request = window(frames, 1)
    images = _timed(stages, "cpu_to_pil", lambda: frames_to_pil(frames))
    cpu = torch.device("cpu")
    on_cpu = _timed(
        stages,
        "cpu_processor",
        lambda: text.processor_inputs(engine.processor, prompt, images, cpu),
    )
    _timed(stages, "cpu_upload", lambda: on_cpu.to(engine.device))
    inputs = _timed(stages, "inputs", lambda: engine._inputs(prompt, request))
    with torch.inference_mode():
        vision = _timed(stages, "vision", lambda: engine.model.get_vision_embedding(inputs))
        merged = dict(inputs, vision_hidden_states=vision)
        embeds = _timed(stages, "merge", lambda: engine.model.get_vllm_embedding(merged)[0])
        logits = _timed(stages, "prefill", lambda: engine.decoder.prefiller.prefill(embeds))
        _timed(stages, "first_token", lambda: int(sample(logits, params).item()))
    path = ("inputs", "vision", "merge", "prefill", "first_token")
    stages["total"] = sum(stages[name] for name in path)
    stages["cpu_inputs"] = stages["cpu_to_pil"] + stages["cpu_processor"] + stages["cpu_upload"]
    stages["prompt_tokens"] = float(embeds.shape[1])
    return stages


def stream_times(engine: Any, request: EngineRequest) -> dict[str, float]:
    """One window through `engine.stream()`: first chunk ms, tokens, decode tok/s after it."""
    sync()
    started = time.perf_counter()
    first = last = 0.0
    tokens = first_tokens = 0
    for chunk in engine.stream(request, threading.Event()):
        last = time.perf_counter()
        if not tokens:
            first, first_tokens = last, chunk.tokens
        tokens += chunk.tokens
    rate = (tokens - first_tokens) / (last - first) if last > first else 0.0
    return {"first_chunk_ms": (first - started) * 1000, "tokens": tokens, "tok_s": rate}


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """The median of each field over runs."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 1024**3 if torch.cuda.is_available() else 0.0
