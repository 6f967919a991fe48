"""Speech on MiniCPM-o 4.5's own code, as far as it runs without the vocoder's weight files.

`lookout models synth --tts` random-initialises the TTS module from the model's code. What
cannot run here: `init_tts(streaming=True)` builds minicpmo-utils' Token2wav from
<checkpoint>/assets/token2wav (ONNX speech tokenizer and speaker models, flow and HiFT
weights, their YAML configs), weight files that ship only with the downloaded checkpoint,
and Token2wav moves its models to CUDA unconditionally. Up to there the real code runs: the
streaming prefill of a window (frames and prompt as the speech path sends them) and the
streaming generation of its answer. From the vocoder on, tests/test_minicpmo.py feeds the
PCM path the vocoder's real output format (24 kHz float waveforms with their text).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.minicpmo_checkpoint import cpu_settings, engine, frames, synth, tiny_checkpoint
from worker.engines.base import EngineError, WindowFrame

torch = pytest.importorskip("torch")

__all__ = ["engine", "frames", "tiny_checkpoint"]  # fixtures, used by name


@pytest.fixture(scope="module")
def tts_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("checkpoints") / "minicpmo_tts"
    done = synth(out, "--size", "tiny", "--tts")
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_synth_tts_builds_the_models_own_tts_module(tts_checkpoint: Path) -> None:
    from transformers import AutoModel  # type: ignore[attr-defined]

    from worker.engines.minicpmo_preflight import weight_bytes
    from worker.engines.remote_code import relaxed_import_check

    assert weight_bytes(str(tts_checkpoint), True) > weight_bytes(str(tts_checkpoint), False)
    with relaxed_import_check():
        model = AutoModel.from_pretrained(
            tts_checkpoint, trust_remote_code=True, init_audio=True, init_tts=True
        )
    assert type(model.tts).__name__ == "MiniCPMTTS"
    assert model.tts.config.llm_dim == model.llm.config.hidden_size


def test_speech_stops_before_loading_with_the_missing_vocoder_files_named(
    tts_checkpoint: Path,
) -> None:
    from worker.engines.minicpmo import MiniCPMoEngine

    speaking = MiniCPMoEngine(cpu_settings(tts_checkpoint, enable_tts=True))
    with pytest.raises(EngineError) as caught:
        speaking.load()
    message = str(caught.value)
    assert "assets/token2wav" in message and "campplus.onnx" in message and "hift.pt" in message
    assert speaking.model is None  # refused before any weight was loaded


def test_the_models_streaming_api_takes_the_speech_paths_window(
    engine: Any, frames: list[WindowFrame]
) -> None:
    from worker.engines.minicpmo_speech import speech_messages
    from worker.engines.transformers_engine import frames_to_pil

    model = engine.model
    prompt = "Describe what is happening."
    prefilled = model.streaming_prefill(
        session_id="window-1",
        msgs=speech_messages(frames_to_pil(frames[:2]), prompt),
        is_last_chunk=True,
    )
    assert prefilled.count("<image>./</image>") == 2 and prompt in prefilled
    answer = model.streaming_generate(
        session_id="window-1",
        generate_audio=False,  # the audio half needs the vocoder (module docstring)
        use_tts_template=True,
        max_new_tokens=6,
        do_sample=False,
    )
    pieces = [piece for piece, *_ in answer]
    assert pieces and all(isinstance(piece, str) for piece in pieces) and "".join(pieces)


def test_a_new_session_id_starts_a_fresh_llm_cache(engine: Any, frames: list[WindowFrame]) -> None:
    from worker.engines.minicpmo_speech import speech_messages
    from worker.engines.transformers_engine import frames_to_pil

    model = engine.model
    lengths = []
    for session in ("window-a", "window-b"):
        model.streaming_prefill(
            session_id=session,
            msgs=speech_messages(frames_to_pil(frames[:1]), "What is it?"),
            is_last_chunk=True,
        )
        lengths.append(model._get_kv_cache_length())
    assert lengths[0] == lengths[1] > 0  # the second window did not pile onto the first
