"""Checks before a GPU engine loads anything, each failing with what to do about it.

Model folder present (else the download command), packages of the `gpu` extra importable,
CUDA visible, enough free GPU memory for this checkpoint (read from the safetensors headers,
so the number is this checkpoint's, AWQ or BF16, and only the parts that will be loaded).
"""

from __future__ import annotations

import importlib.util
import json
import struct
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from worker.engines.base import EngineError

GIB = 1024**3
DOWNLOADS = {
    "awq": "hf download openbmb/MiniCPM-o-4_5-awq --local-dir models/MiniCPM-o-4_5-awq",
    "bf16": "hf download openbmb/MiniCPM-o-4_5 --local-dir models/MiniCPM-o-4_5",
}
RUNTIME_BYTES = 2 * GIB  # CUDA context, activations, static KV cache of 2048 tokens (~0.3 GiB)
SPEECH_PREFIXES = ("apm.", "audio_projection_layer.", "audio_avg_pooler.", "tts.")
TTS_ASSET_BYTES = int(1.5 * GIB)  # token2wav flow + vocoder, loaded outside the checkpoint
GPU_PACKAGES = ("torch", "transformers", "accelerate", "PIL")
TTS_PACKAGES = ("stepaudio2", "soundfile", "librosa", "torchaudio", "onnxruntime", "hyperpyyaml")
# What minicpmo-utils' Token2wav (the streaming vocoder) loads from <checkpoint>/assets/token2wav:
# its speech tokenizer and speaker models (ONNX), the flow model and the HiFT vocoder.
TOKEN2WAV_FILES = (
    "speech_tokenizer_v2_25hz.onnx",
    "campplus.onnx",
    "flow.yaml",
    "flow.pt",
    "config.yaml",
    "hift.pt",
    "hift_original.pt",
)


def download_hint(model_path: str) -> str:
    """The download command matching the folder name (AWQ unless it looks like BF16)."""
    kind = "awq" if "awq" in model_path.lower() else "bf16"
    return DOWNLOADS[kind]


def read_config(model_path: str) -> dict[str, Any]:
    """config.json of MODEL_PATH; EngineError with the download command when absent."""
    folder = Path(model_path)
    if not folder.is_dir():
        raise EngineError(
            f"MODEL_PATH={model_path} does not exist. Download the checkpoint first:\n"
            f"  {download_hint(model_path)}\n(see docs/models.md)"
        )
    config = folder / "config.json"
    if not config.is_file():
        raise EngineError(
            f"MODEL_PATH={model_path} has no config.json: not a downloaded checkpoint. "
            f"Download it with:\n  {download_hint(model_path)}"
        )
    try:
        data = json.loads(config.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise EngineError(f"{config} is not valid JSON ({exc}); download it again") from exc
    if not isinstance(data, dict):
        raise EngineError(f"{config} is not a JSON object; download it again")
    return data


def detect_dtype(config: dict[str, Any]) -> str:
    """'float16' for quantised checkpoints (AWQ kernels want it), otherwise 'bfloat16'."""
    quant = config.get("quantization_config")
    if quant is None and isinstance(config.get("text_config"), dict):
        quant = config["text_config"].get("quantization_config")
    return "float16" if quant else "bfloat16"


def choose_dtype(asked: str, config: dict[str, Any], device: str) -> str:
    """MODEL_DTYPE applied to this checkpoint on `device`; EngineError for a combination that
    cannot run (quantised kernels take float16 only; the GPU fast path has no float32)."""
    detected = detect_dtype(config)
    if asked == "auto" or asked == detected:
        return detected
    if detected == "float16" and quant_method(config):
        raise EngineError(
            f"MODEL_DTYPE={asked}: quantised checkpoints run in float16 only; set MODEL_DTYPE=auto"
        )
    if asked == "float32" and device != "cpu":
        raise EngineError(
            "MODEL_DTYPE=float32 runs on the CPU only (ENGINE_DEVICE=cpu, small checkpoints); "
            "on a GPU set MODEL_DTYPE=auto"
        )
    return asked


def quant_method(config: dict[str, Any]) -> str:
    """The checkpoint's quantisation method ('awq', 'gptq', ...) or '' for none."""
    quant = config.get("quantization_config") or {}
    return str(quant.get("quant_method", "")) if isinstance(quant, dict) else ""


def require_packages(
    names: Sequence[str],
    extra: str,
    find: Callable[[str], object | None] = importlib.util.find_spec,
) -> None:
    """EngineError naming the missing modules and the extra that installs them."""
    missing = [name for name in names if find(name) is None]
    if missing:
        raise EngineError(
            f"missing Python packages: {', '.join(missing)}. "
            f"Install the {extra} extra: pip install 'lookout[{extra}]' (see docs/models.md)"
        )


def require_cuda(torch_module: Any) -> None:
    """EngineError unless torch sees a CUDA device."""
    if not torch_module.cuda.is_available():
        build = getattr(torch_module.version, "cuda", None) or "none (a CPU build)"
        raise EngineError(
            "ENGINE=minicpmo needs an NVIDIA GPU with CUDA, and torch sees none "
            f"(torch {torch_module.__version__}, CUDA build {build}). "
            "Use ENGINE=cpu, or ENGINE=transformers with a small model on the CPU."
        )


def _safetensors_sizes(path: Path) -> Iterable[tuple[str, int]]:
    """(tensor name, bytes) from one safetensors file's header, without reading weights."""
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    for name, meta in header.items():
        if name != "__metadata__":
            start, end = meta["data_offsets"]
            yield name, int(end) - int(start)


def weight_bytes(model_path: str, with_speech: bool) -> int:
    """Bytes of the weights that will be loaded (speech modules only when speaking)."""
    total = 0
    for path in sorted(Path(model_path).glob("*.safetensors")):
        for name, size in _safetensors_sizes(path):
            if with_speech or not name.startswith(SPEECH_PREFIXES):
                total += size
    return total


def vram_needed(model_path: str, with_speech: bool) -> int:
    """Estimated GPU memory for this checkpoint: weights + runtime (+ TTS assets)."""
    needed = weight_bytes(model_path, with_speech) + RUNTIME_BYTES
    return needed + (TTS_ASSET_BYTES if with_speech else 0)


def require_vram(needed: int, free: int, total: int, device_name: str, model_path: str) -> None:
    """EngineError when the GPU has less free memory than this checkpoint needs."""
    if free < needed:
        hint = (
            "the AWQ checkpoint needs about half as much"
            if "awq" not in model_path.lower()
            else "free the GPU (other processes hold it) or use a larger one"
        )
        raise EngineError(
            f"{model_path} needs about {needed / GIB:.1f} GiB of GPU memory; "
            f"{free / GIB:.1f} GiB of {total / GIB:.1f} GiB is free on {device_name}: {hint}"
        )


def require_cpu_size(model_path: str, max_gib: float, with_speech: bool) -> None:
    """EngineError when a checkpoint is too big to run on the CPU (a real one takes minutes
    per answer there): the CPU is for test checkpoints (`lookout models synth --size tiny`)."""
    size = weight_bytes(model_path, with_speech)
    if size > max_gib * GIB:
        raise EngineError(
            f"{model_path} holds {size / GIB:.1f} GiB of weights: too big for ENGINE_DEVICE=cpu "
            f"(CPU_MODEL_MAX_GIB={max_gib:g}). Run it on a CUDA GPU (ENGINE_DEVICE=auto), or "
            "raise CPU_MODEL_MAX_GIB if you really mean to wait minutes for each answer."
        )


def require_vocoder(model_path: str) -> None:
    """EngineError unless the checkpoint holds the token2wav vocoder that speech needs."""
    folder = Path(model_path, "assets", "token2wav")
    missing = [name for name in TOKEN2WAV_FILES if not (folder / name).is_file()]
    if missing:
        raise EngineError(
            f"speech needs the token2wav vocoder in {folder}; missing: {', '.join(missing)}. "
            "These weight files come with the downloaded checkpoint (a synthetic one has none): "
            "download it again, or run with ENABLE_TTS=false"
        )
