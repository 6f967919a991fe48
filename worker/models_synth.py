"""`lookout models synth OUT`: a random-weights MiniCPM-o 4.5 checkpoint built from the model's
own remote code.

What it is for: smoke-testing a GPU box, its driver and the install (and CI, at `tiny` size)
before a 16 GB download. The checkpoint has the real architecture (the remote code's
`MiniCPMO` class, its SigLIP, resampler, Whisper encoder and, with `--tts`, its TTS module),
the real tokenizer and processor, and random weights: what it says is noise, and how fast
it says it is what the real checkpoint does.

The remote code comes from DIR (`--from`): a downloaded checkpoint's folder, or any folder
holding `configuration_minicpmo.py`, `modeling_minicpmo.py` and the tokenizer files.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.engines.base import EngineError

# The published shapes of MiniCPM-o 4.5: Qwen3-8B, SigLIP so400m at patch 14, the
# Whisper-medium encoder; the TTS at MiniCPMTTSConfig's own shapes, fed by the LLM's width.
LLM_FULL = {
    "vocab_size": 151748,
    "hidden_size": 4096,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "intermediate_size": 12288,
    "max_position_embeddings": 40960,
    "rope_theta": 1_000_000.0,
    "rms_norm_eps": 1e-6,
}
VISION_FULL = {
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "patch_size": 14,
    "image_size": 980,
    "model_type": "siglip",
}
AUDIO_FULL = {
    "d_model": 1024,
    "encoder_layers": 24,
    "encoder_attention_heads": 16,
    "encoder_ffn_dim": 4096,
    "decoder_layers": 0,
    "num_mel_bins": 80,
    "max_source_positions": 1500,
}
# Tiny: every module present and wired as in the full model, small enough for a CPU test.
# The vocabulary stays whole (the real tokenizer's ids must index it); the resampler needs
# hidden_size / 128 >= 1 heads.
LLM_TINY = {
    **LLM_FULL,
    "hidden_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "intermediate_size": 512,
    "max_position_embeddings": 4096,
}
VISION_TINY = {**VISION_FULL, "hidden_size": 64, "intermediate_size": 128}
VISION_TINY.update(num_hidden_layers=2, num_attention_heads=2)
AUDIO_TINY = {**AUDIO_FULL, "d_model": 64, "encoder_layers": 1, "encoder_attention_heads": 2}
AUDIO_TINY["encoder_ffn_dim"] = 128
# Fields the TTS code reads from its config beyond MiniCPMTTSConfig's own arguments; values
# are MiniCPM-o's generation defaults.
TTS_EXTRA = {
    "top_p": 0.85,
    "top_k": 25,
    "repetition_penalty": 1.05,
    "audio_tokenizer_type": "s3tokenizer_step_audio",
    "s3_stream_generate": True,
    "s3_stream_n_timesteps": 10,
    "s3_stream_chunk_size": 25,
    "s3_stream_prelook_size": 3,
}
TTS_TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1}
TTS_TINY.update(num_attention_heads=2, num_key_value_heads=2)
CODE_FILES = (
    "configuration_minicpmo.py",
    "modeling_minicpmo.py",
    "modeling_navit_siglip.py",
    "processing_minicpmo.py",
    "tokenization_minicpmo_fast.py",
    "utils.py",
)
REQUIRED_FILES = ("tokenizer_config.json", "preprocessor_config.json")
OPTIONAL_FILES = (
    "tokenizer.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "special_tokens_map.json",
    "generation_config.json",
)
SIZES = ("tiny", "full")


@dataclass(frozen=True)
class SynthPlan:
    """What to build: where from, where to, how big, with or without the TTS module."""

    source: Path
    out: Path
    size: str
    tts: bool = False
    dtype: str = "bfloat16"
    device: str = "cpu"
    seed: int = 0


def check_source(source: Path) -> None:
    """EngineError unless `source` holds MiniCPM-o's remote code and tokenizer files."""
    if not source.is_dir():
        raise EngineError(f"--from {source}: no such folder")
    missing = [name for name in CODE_FILES + REQUIRED_FILES if not (source / name).is_file()]
    has_vocab = all((source / name).is_file() for name in ("vocab.json", "merges.txt"))
    if not has_vocab and not (source / "tokenizer.json").is_file():
        missing.append("tokenizer.json (or vocab.json and merges.txt)")
    if missing:
        raise EngineError(
            f"--from {source} is not MiniCPM-o 4.5's remote code: missing {', '.join(missing)}. "
            "Point --from at a downloaded MiniCPM-o 4.5 checkpoint folder."
        )


def check_out(out: Path) -> None:
    """EngineError if `out` exists: a checkpoint is never written over anything."""
    if out.exists():
        raise EngineError(f"{out} already exists: choose a new folder (nothing was written)")
    if "." in out.name:  # transformers names the remote code's module after the folder
        raise EngineError(
            f"{out}: the folder name may not contain '.' (transformers cannot load it)"
        )


def config_dict(size: str, tts: bool) -> dict[str, Any]:
    """config.json of the synthetic checkpoint: the published shapes, or tiny ones."""
    if size not in SIZES:
        raise EngineError(f"--size {size!r}: choose one of {', '.join(SIZES)}")
    full = size == "full"
    llm = LLM_FULL if full else LLM_TINY
    tts_config = {**TTS_EXTRA, "llm_dim": llm["hidden_size"], **({} if full else TTS_TINY)}
    return {
        "architectures": ["MiniCPMO"],
        "model_type": "minicpmo",
        "auto_map": {
            "AutoConfig": "configuration_minicpmo.MiniCPMOConfig",
            "AutoModel": "modeling_minicpmo.MiniCPMO",
            "AutoModelForCausalLM": "modeling_minicpmo.MiniCPMO",
        },
        **llm,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "use_sliding_window": False,
        "sliding_window": None,
        "attention_bias": False,
        "torch_dtype": "bfloat16",
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "query_num": 64,
        "image_size": 448,
        "patch_size": 14,
        "drop_vision_last_layer": False,
        "slice_config": {"max_slice_nums": 9, "patch_size": 14, "scale_resolution": 448},
        "vision_config": VISION_FULL if full else VISION_TINY,
        "audio_config": AUDIO_FULL if full else AUDIO_TINY,
        "tts_config": tts_config,
        "init_vision": True,
        "init_audio": True,
        "init_tts": tts,
        "lookout_synthetic": {"size": size, "weights": "random", "note": "not a trained model"},
    }


def copy_code(source: Path, out: Path) -> None:
    """The remote code and tokenizer files, as the checkpoint ships them."""
    for name in CODE_FILES + REQUIRED_FILES + OPTIONAL_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, out / name)  # writable: `models patch` edits them


def build(plan: SynthPlan, progress: Callable[[str], None] = print) -> Path:
    """Write the checkpoint to `plan.out` (via a temporary folder beside it, renamed at the end)."""
    check_source(plan.source)
    check_out(plan.out)
    config = config_dict(plan.size, plan.tts)
    work = plan.out.with_name(plan.out.name + "_partial")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:
        copy_code(plan.source, work)
        (work / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        _write_weights(work, plan, progress)  # save_pretrained rewrites config.json, whole
        work.rename(plan.out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return plan.out


def _write_weights(folder: Path, plan: SynthPlan, progress: Callable[[str], None]) -> None:
    import torch
    from transformers import AutoConfig, AutoModel  # type: ignore[attr-defined]

    from worker.engines.remote_code import relaxed_import_check

    started = time.perf_counter()
    with relaxed_import_check():
        config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
        torch.manual_seed(plan.seed)
        dtype = getattr(torch, plan.dtype)
        progress(f"building {plan.size} MiniCPM-o 4.5 with random weights on {plan.device}")
        with torch.device(plan.device):
            model = AutoModel.from_config(config, trust_remote_code=True, torch_dtype=dtype)
    params = sum(p.numel() for p in model.parameters())
    progress(f"{params / 1e9:.2f} B parameters in {time.perf_counter() - started:.1f} s; saving")
    model.save_pretrained(folder, safe_serialization=True, max_shard_size="4GB")
    progress(f"saved in {time.perf_counter() - started:.1f} s")


def add_synth_arguments(actions: Any) -> None:
    """`synth OUT [--size tiny|full] [--from DIR] [--tts] [--device D]` under `lookout models`."""
    text = "write a random-weights MiniCPM-o 4.5 checkpoint from the model's own code"
    synth = actions.add_parser("synth", help=text, description=text)
    synth.add_argument("out", type=Path, help="new folder for the checkpoint (must not exist)")
    synth.add_argument("--size", choices=SIZES, default="tiny", help="tiny (CPU tests) or full")
    synth.add_argument(
        "--from",
        dest="source",
        type=Path,
        default=None,
        help="folder with MiniCPM-o 4.5's remote code and tokenizer (default MODEL_PATH)",
    )
    synth.add_argument("--tts", action="store_true", help="include the TTS module")
    synth.add_argument(
        "--device", default="cpu", help="where to build the weights (cuda: faster for full)"
    )
    synth.add_argument("--seed", type=int, default=0, help="random seed of the weights")


def run_synth(args: Any, settings: Any) -> int:
    """Build the checkpoint; 0 when written, 2 on bad input (nothing written)."""
    source = args.source or Path(settings.model_path)
    plan = SynthPlan(source, args.out, args.size, args.tts, device=args.device, seed=args.seed)
    try:
        build(plan)
    except EngineError as exc:
        print(f"lookout models synth: {exc}")
        return 2
    print(f"wrote {args.out}: random weights, not a trained model (MODEL_PATH={args.out})")
    return 0
