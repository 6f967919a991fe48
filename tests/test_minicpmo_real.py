"""The minicpmo engine on MiniCPM-o 4.5's own code: a tiny random-weights checkpoint built by
`lookout models synth`, loaded through the engine's own `load()` on the CPU
(ENGINE_DEVICE=cpu), real frames from ffmpeg, the real processor, SigLIP, resampler and Qwen3.
What is checked: the fast path is the one used, and it computes the model's own logits.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.media import make_jpegs
from tests.minicpmo_checkpoint import (
    cpu_settings,
    engine,
    frames,
    require_remote_code,
    synth,
    tiny_checkpoint,
)
from worker.engines.base import EngineError, EngineRequest, WindowFrame

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

__all__ = ["engine", "frames", "tiny_checkpoint"]  # fixtures, used by name


def window(frames: list[WindowFrame], max_new: int = 12) -> EngineRequest:
    return EngineRequest(
        source="cam",
        frames=frames,
        instruction="What is happening?",
        context=("A car passed.",),
        max_new_tokens=max_new,
    )


def prompt_embeds(engine: Any, frames: list[WindowFrame]) -> Any:
    from worker.engines import minicpmo_text as text
    from worker.engines.transformers_engine import frames_to_pil

    prompt = text.build_prompt_text(engine.processor.tokenizer, len(frames), "What is happening?")
    inputs = text.processor_inputs(engine.processor, prompt, frames_to_pil(frames), engine.device)
    return inputs, text.embed(engine.model, inputs)


def test_load_runs_the_models_own_code_with_the_fast_path(engine: Any) -> None:
    model = engine.model
    assert type(model).__module__.startswith("transformers_modules.")  # the remote code
    assert type(model).__name__ == "MiniCPMO" and type(model.llm).__name__ == "Qwen3ForCausalLM"
    assert model.llm.config.model_type == "minicpmo"  # what once switched the fast path off
    info = engine.info()
    assert info.device == "cpu" and info.dtype == "bfloat16"
    assert info.extra["decode"] == "eager" and info.extra["prefill"] == "bucketed eager"


def test_a_window_of_real_frames_decodes_on_the_fast_path(
    engine: Any, frames: list[WindowFrame]
) -> None:
    inputs, _ = prompt_embeds(engine, frames)
    assert len(inputs["image_bound"][0]) == len(frames)  # each frame's tokens are in the prompt
    before = engine.decoder.steps
    chunks = list(engine.stream(window(frames, max_new=12), threading.Event()))
    tokens = sum(c.tokens for c in chunks)
    assert 0 < tokens <= 12 and "".join(c.text for c in chunks)
    assert engine.decoder.steps - before == tokens - 1  # every token after the first: a step


def test_prompt_holds_every_frame_then_context_and_instruction(
    engine: Any, frames: list[WindowFrame]
) -> None:
    inputs, embeds = prompt_embeds(engine, frames[:3])
    ids = inputs["input_ids"][0].tolist()
    text = engine.processor.tokenizer.decode(ids)
    assert text.count("<image>") == 3 and text.index("</image>") < text.index("What is happening?")
    assert text.rstrip().endswith("<|im_start|>assistant\n<think>\n\n</think>".rstrip())
    assert embeds.shape[:2] == (1, len(ids))


def test_fast_path_agrees_with_the_models_own_forward_teacher_forced(
    engine: Any, frames: list[WindowFrame]
) -> None:
    from worker.engines.fast_decode_check import teacher_forced

    _, embeds = prompt_embeds(engine, frames)
    forced = torch.tensor(engine.processor.tokenizer.encode(" A person walks to the left."))
    agreement = teacher_forced(engine.model.llm, engine.decoder, embeds, forced)
    assert agreement.positions == len(forced) + 1
    assert agreement.ok, agreement  # logits within 8 bf16 steps; top-1 equal but near-ties
    assert agreement.top1_matches + agreement.near_ties == agreement.positions


def test_teacher_forced_check_catches_a_step_fed_the_wrong_token(
    engine: Any, frames: list[WindowFrame]
) -> None:
    from worker.engines.fast_decode_check import compare, fast_logits, reference_logits

    _, embeds = prompt_embeds(engine, frames)
    forced = torch.tensor(engine.processor.tokenizer.encode(" A person walks to the left."))
    reference = reference_logits(engine.model.llm, embeds, forced)
    stale = fast_logits(engine.decoder, embeds, forced.roll(1))  # each step fed the last token
    found = compare(reference, stale)
    assert not found.ok and not found.within_tolerance and found.mismatches > 0, found


def test_cancel_stops_a_text_window_after_one_chunk(engine: Any, frames: list[WindowFrame]) -> None:
    cancel = threading.Event()
    received = []
    for chunk in engine.stream(window(frames, max_new=200), cancel):
        received.append(chunk)
        cancel.set()
    assert len(received) == 1


def test_cpu_refuses_a_checkpoint_over_its_size_limit(tiny_checkpoint: Path) -> None:
    from worker.engines.minicpmo import MiniCPMoEngine

    small = MiniCPMoEngine(cpu_settings(tiny_checkpoint, cpu_model_max_gib=0.01))
    with pytest.raises(EngineError, match="CPU_MODEL_MAX_GIB=0.01"):
        small.load()


def test_synth_refuses_bad_input_and_writes_nothing(tmp_path: Path) -> None:
    require_remote_code()
    existing = tmp_path / "taken"
    existing.mkdir()
    done = synth(existing)
    assert done.returncode == 2 and "already exists" in done.stdout
    assert list(existing.iterdir()) == []
    dotted = synth(tmp_path / "v4.5")
    assert dotted.returncode == 2 and "may not contain '.'" in dotted.stdout
    no_code = tmp_path / "empty"
    no_code.mkdir()
    import subprocess
    import sys

    from tests.helpers import REPO

    bad = subprocess.run(
        [sys.executable, "-m", "lookout", "--env-file", "/nonexistent", "models", "synth"]
        + [str(tmp_path / "out"), "--from", str(no_code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "missing configuration_minicpmo.py" in bad.stdout
    assert not (tmp_path / "out").exists() and not (tmp_path / "out_partial").exists()


def test_frames_reach_the_processor_as_rgb() -> None:
    from worker.engines.transformers_engine import frames_to_pil

    blue_bgr = np.zeros((24, 32, 3), np.uint8)
    blue_bgr[:, :] = (255, 0, 0)
    (image,) = frames_to_pil([WindowFrame(seq=0, ts=0.0, image=blue_bgr)])
    assert image.getpixel((0, 0)) == (0, 0, 255)


def test_a_window_too_long_for_the_static_cache_streams_through_generate(
    engine: Any, frames: list[WindowFrame]
) -> None:
    before = engine.decoder.steps
    cancel = threading.Event()
    first = next(iter(engine.stream(window(frames, max_new=1000), cancel)))  # > DECODE_MAX_LEN
    cancel.set()
    assert first.tokens > 0 and first.text
    assert engine.decoder.steps == before  # HF generate() on the model's llm, not the step


def test_pixels_made_on_the_device_equal_the_processors(
    engine: Any, frames: list[WindowFrame]
) -> None:
    from worker.engines import minicpmo_text as text
    from worker.engines.minicpmo_inputs import device_inputs
    from worker.engines.transformers_engine import frames_to_pil

    for width, height in ((640, 360), (1280, 720), (320, 240)):
        images = [
            cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR)
            for j in make_jpegs(2, width, height)
        ]
        window_frames = [WindowFrame(seq=i, ts=0.0, image=img) for i, img in enumerate(images)]
        prompt = text.build_prompt_text(engine.processor.tokenizer, 2, "What?")
        ours = device_inputs(engine.processor, prompt, window_frames, engine.device)
        theirs = text.processor_inputs(
            engine.processor, prompt, frames_to_pil(window_frames), engine.device
        )
        assert torch.equal(ours["input_ids"], theirs["input_ids"])
        assert torch.equal(ours["image_bound"][0], theirs["image_bound"][0])
        assert torch.equal(ours["tgt_sizes"][0].int(), theirs["tgt_sizes"][0].int())
        for mine, reference in zip(ours["pixel_values"][0], theirs["pixel_values"][0], strict=True):
            levels = (mine - reference).abs() * 255 / 2  # values are (x/255 - 0.5) / 0.5
            assert mine.shape == reference.shape and float(levels.max()) <= 2.01
            assert float((levels > 0.5).float().mean()) < 1e-3  # nearly every pixel equal


def test_frames_of_different_sizes_go_through_the_processor(engine: Any) -> None:
    from worker.engines.minicpmo_inputs import device_inputs

    mixed = [
        WindowFrame(seq=0, ts=0.0, image=np.zeros((360, 640, 3), np.uint8)),
        WindowFrame(seq=1, ts=0.0, image=np.zeros((240, 320, 3), np.uint8)),
    ]
    assert device_inputs(engine.processor, "<image>./</image>", mixed, engine.device) is None
    chunks = list(engine.stream(window(mixed, max_new=4), threading.Event()))
    assert sum(c.tokens for c in chunks) > 0


def test_vision_attention_through_sdpa_equals_the_models_eager_attention(
    engine: Any, frames: list[WindowFrame]
) -> None:
    inputs, _ = prompt_embeds(engine, frames)
    layers = engine.model.vpm.encoder.layers
    assert engine.info().extra["vision_attention"] == f"sdpa ({len(layers)} layers)"
    with torch.inference_mode():
        fused = engine.model.get_vision_embedding(inputs)[0]
        swapped = [layer.self_attn.__dict__.pop("forward") for layer in layers]  # eager again
        try:
            eager = engine.model.get_vision_embedding(inputs)[0]
        finally:
            for layer, forward in zip(layers, swapped, strict=True):
                layer.self_attn.forward = forward
    scale = float(eager.abs().max())
    assert float((fused - eager).abs().max()) <= scale * 2**-7 * 8  # 8 bf16 steps
