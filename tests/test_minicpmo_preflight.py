"""MiniCPM-o preflight, dtype detection and speech-audio conversion (no GPU, mostly no torch).

Configs and safetensors files are real files written here; the only stand-in is a model
object offering `init_tts`/`init_token2wav_cache` to check what the engine passes them.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.io import wavfile

from shared.settings import Settings
from worker.engines.base import PCM_SAMPLE_RATE, EngineError
from worker.engines.minicpmo_preflight import (
    GIB,
    RUNTIME_BYTES,
    choose_dtype,
    detect_dtype,
    quant_method,
    read_config,
    require_packages,
    require_vram,
    vram_needed,
    weight_bytes,
)
from worker.engines.minicpmo_speech import (
    find_reference_audio,
    init_speech,
    load_reference_audio,
    waveform_pcm,
)

AWQ_CONFIG = {
    "architectures": ["MiniCPMO"],
    "model_type": "minicpmo",
    "torch_dtype": "float16",
    "quantization_config": {
        "bits": 4,
        "group_size": 128,
        "quant_method": "awq",
        "version": "gemm",
        "modules_to_not_convert": ["vpm", "resampler", "apm", "tts"],
    },
}
BF16_CONFIG = {"architectures": ["MiniCPMO"], "model_type": "minicpmo", "torch_dtype": "bfloat16"}


def write_checkpoint(folder: Path, config: dict[str, Any], tensors: dict[str, int]) -> Path:
    """A config.json and one safetensors file with uint8 tensors of the given sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    header, offset = {}, 0
    for name, size in tensors.items():
        header[name] = {"dtype": "U8", "shape": [size], "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)
    return folder


def test_awq_config_means_float16(tmp_path: Path) -> None:
    awq = read_config(str(write_checkpoint(tmp_path / "awq", AWQ_CONFIG, {})))
    bf16 = read_config(str(write_checkpoint(tmp_path / "bf16", BF16_CONFIG, {})))
    assert (detect_dtype(awq), quant_method(awq)) == ("float16", "awq")
    assert (detect_dtype(bf16), quant_method(bf16)) == ("bfloat16", "")


def test_model_dtype_is_the_checkpoints_unless_asked_and_refuses_what_cannot_run(
    tmp_path: Path,
) -> None:
    awq = read_config(str(write_checkpoint(tmp_path / "awq", AWQ_CONFIG, {})))
    bf16 = read_config(str(write_checkpoint(tmp_path / "bf16", BF16_CONFIG, {})))
    assert choose_dtype("auto", awq, "cuda") == "float16"
    assert choose_dtype("auto", bf16, "cuda") == "bfloat16"
    assert choose_dtype("float32", bf16, "cpu") == "float32"
    assert choose_dtype("float16", bf16, "cuda") == "float16"
    with pytest.raises(EngineError, match="float16 only; set MODEL_DTYPE=auto"):
        choose_dtype("bfloat16", awq, "cuda")
    with pytest.raises(EngineError, match="CPU only"):
        choose_dtype("float32", bf16, "cuda")


def test_missing_model_path_prints_download(tmp_path: Path) -> None:
    with pytest.raises(EngineError) as err:
        read_config(str(tmp_path / "MiniCPM-o-4_5-awq"))
    assert "does not exist" in str(err.value)
    assert "hf download openbmb/MiniCPM-o-4_5-awq" in str(err.value)
    with pytest.raises(EngineError, match="openbmb/MiniCPM-o-4_5 "):
        read_config(str(tmp_path / "MiniCPM-o-4_5"))


def test_folder_without_config_or_with_bad_json(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="no config.json"):
        read_config(str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(EngineError, match="not valid JSON"):
        read_config(str(tmp_path))


def test_missing_packages_name_the_extra() -> None:
    require_packages(("json",), "gpu")  # present: no error
    with pytest.raises(EngineError) as err:
        require_packages(("json", "lookout_no_such_module_x"), "gpu")
    message = str(err.value)
    assert "lookout_no_such_module_x" in message and "lookout[gpu]" in message
    assert "json," not in message


def test_vram_needed_from_safetensors_headers(tmp_path: Path) -> None:
    folder = write_checkpoint(
        tmp_path / "ck", AWQ_CONFIG, {"llm.w": 3000, "vpm.w": 1000, "tts.w": 500}
    )
    assert weight_bytes(str(folder), with_speech=False) == 4000
    assert weight_bytes(str(folder), with_speech=True) == 4500
    assert vram_needed(str(folder), with_speech=False) == 4000 + RUNTIME_BYTES


def test_short_vram_reports_needed_and_free() -> None:
    require_vram(8 * GIB, 10 * GIB, 80 * GIB, "H100", "models/MiniCPM-o-4_5-awq")
    with pytest.raises(EngineError) as err:
        require_vram(19 * GIB, 6 * GIB, 24 * GIB, "RTX 4090", "models/MiniCPM-o-4_5")
    message = str(err.value)
    assert "19.0 GiB" in message and "6.0 GiB of 24.0 GiB is free on RTX 4090" in message
    assert "AWQ" in message


def test_engine_load_without_cuda_says_so(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    if torch.cuda.is_available():
        pytest.skip("this check is for machines without CUDA")
    from worker.engines.minicpmo import MiniCPMoEngine

    folder = write_checkpoint(tmp_path / "ck", BF16_CONFIG, {"llm.w": 10})
    engine = MiniCPMoEngine(Settings(engine="minicpmo", model_path=str(folder)))
    with pytest.raises(EngineError, match="needs an NVIDIA GPU with CUDA"):
        engine.load()


def test_sine_resampled_to_48k_keeps_frequency_and_length() -> None:
    rate, seconds, freq = 24_000, 0.5, 440.0
    t = np.arange(int(rate * seconds)) / rate
    pcm = waveform_pcm(0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32))
    out = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32767
    assert abs(len(out) - 2 * len(t)) <= 2
    spectrum = np.abs(np.fft.rfft(out))
    peak = np.fft.rfftfreq(len(out), 1 / PCM_SAMPLE_RATE)[int(spectrum.argmax())]
    assert abs(peak - freq) < 3.0
    assert 0.45 < np.abs(out[1000:-1000]).max() < 0.55


def test_overshooting_waveform_clips_to_int16() -> None:
    torch = pytest.importorskip("torch")
    loud = torch.tensor([1.7, -2.5, 0.0, 1.0] * 100, dtype=torch.float32)
    out = np.frombuffer(waveform_pcm(loud), dtype="<i2")
    assert out.max() == 32767 and out.min() == -32767


def test_reference_audio_resolution_and_loading(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="REF_AUDIO_PATH=.*does not exist"):
        find_reference_audio(str(tmp_path), str(tmp_path / "nope.wav"))
    with pytest.raises(EngineError, match="Set REF_AUDIO_PATH"):
        find_reference_audio(str(tmp_path), "")
    assets = tmp_path / "assets"
    assets.mkdir()
    stereo = (np.ones((48_000, 2)) * 8000).astype(np.int16)
    wavfile.write(assets / "a_voice.wav", 48_000, stereo)
    wavfile.write(assets / "ref_voice.wav", 48_000, stereo)
    chosen = find_reference_audio(str(tmp_path), "")
    assert chosen.name == "ref_voice.wav"
    samples = load_reference_audio(chosen)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) - 16_000) <= 1
    assert abs(float(np.median(samples)) - 8000 / 32767) < 0.01


class StandInTTSModel:
    """Stand-in for MiniCPM-o's TTS setup methods (records what the engine passes)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def init_tts(
        self, streaming: bool = False, model_dir: str | None = None, enable_float16: bool = False
    ) -> None:
        self.calls.append(("init_tts", (streaming, enable_float16)))

    def init_token2wav_cache(self, prompt_speech_16k: Any) -> None:
        self.calls.append(("init_token2wav_cache", prompt_speech_16k))


def test_init_speech_sets_voice_once(tmp_path: Path) -> None:
    voice = tmp_path / "voice.wav"
    wavfile.write(voice, 24_000, (np.ones(24_000) * 1000).astype(np.int16))
    model = StandInTTSModel()
    assert init_speech(model, str(tmp_path), str(voice), float16=True) == voice
    assert model.calls[0] == ("init_tts", (True, True))
    name, audio = model.calls[1]
    assert name == "init_token2wav_cache" and abs(len(audio) - 16_000) <= 1
    assert len(model.calls) == 2
