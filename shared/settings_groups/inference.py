"""Inference (worker): the engine, windows and prompts, leases, asks, GPU and openai engines."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings_groups import var

ENGINES = ("cpu", "minicpmo", "transformers", "openai")
ENGINE_DEVICES = ("auto", "cuda", "cpu")
MODEL_DTYPES = ("auto", "bfloat16", "float16", "float32")


@dataclass(frozen=True)
class InferenceSettings:
    """The `inference` group of `Settings`, its variables in the order the docs list them."""

    engine: str = var("cpu", "Commentary engine", "inference", choices=ENGINES)
    model_path: str = var(
        "models/MiniCPM-o-4_5-awq", "Folder of the model weights (GPU engines)", "inference"
    )
    frames_per_inference: int = var(
        4, "Frames in each window the model sees", "inference", lo=1, hi=8
    )
    frame_stride: int = var(
        2, "Take every Nth sampled frame into the window", "inference", lo=1, hi=4
    )
    change_threshold: float = var(
        5.0,
        "Scene change (mean abs pixel diff) below which a cycle is skipped",
        "inference",
        lo=0,
        hi=50,
    )
    inference_interval: float = var(
        1.0, "Pause between commentary cycles of one source (s)", "inference", lo=0, hi=600
    )
    max_new_tokens: int = var(
        512, "Longest commentary in tokens (text only)", "inference", lo=1, hi=8192
    )
    default_instruction: str = var(
        "Describe what is happening in the video.",
        "Instruction a new source starts with",
        "inference",
    )
    context_commentaries: int = var(
        1, "Past commentaries carried into the next prompt", "inference", lo=0, hi=10
    )
    context_max_chars: int = var(
        600, "Longest carried-over context (characters)", "inference", lo=0, hi=10_000
    )
    idle_commentary_interval: float = var(
        0.0, "Comment on an unchanged scene every N s anyway (0: never)", "inference", lo=0, hi=3600
    )
    max_sources_per_worker: int = var(
        16, "Most sources one worker comments on", "inference", lo=1, hi=1000
    )
    lease_ttl: float = var(
        5.0, "Seconds a worker's lease on a source lives without renewal", "inference", lo=1, hi=300
    )
    ask_queue_max: int = var(
        16, "Most queued one-off questions before the API answers 429", "inference", lo=1, hi=10_000
    )
    ask_timeout: float = var(
        60.0, "Seconds a one-off question may take", "inference", lo=1, hi=3600
    )
    compile_decode: bool = var(
        True, "GPU engines compile a static-cache decode step at load", "inference"
    )
    decode_max_len: int = var(
        2048,
        "Prompt plus answer tokens the GPU engines' static KV cache holds (longer: generate())",
        "inference",
        lo=256,
        hi=32_768,
    )
    decode_temperature: float = var(
        0.7, "Sampling temperature of the GPU engines (0: greedy)", "inference", lo=0, hi=2
    )
    engine_device: str = var(
        "auto",
        "Device of the GPU engines (auto: cuda when present; minicpmo takes cpu only up to "
        "CPU_MODEL_MAX_GIB)",
        "inference",
        choices=ENGINE_DEVICES,
    )
    model_dtype: str = var(
        "auto",
        "Weights dtype of ENGINE=minicpmo (auto: float16 for quantised checkpoints, else "
        "bfloat16; float32 only on the CPU, for exact runs of small test checkpoints)",
        "inference",
        choices=MODEL_DTYPES,
    )
    cpu_model_max_gib: float = var(
        2.0,
        "Largest checkpoint (GiB of weights) ENGINE=minicpmo runs on the CPU (test checkpoints)",
        "inference",
        lo=0,
        hi=1024,
    )
    openai_base_url: str = var(
        "http://127.0.0.1:8000/v1",
        "openai engine: base URL of the OpenAI-compatible server (vLLM, SGLang, Ollama, "
        "llama.cpp, transformers serve, a hosted API); /chat/completions is added to it",
        "inference",
    )
    openai_model: str = var(
        "",
        "openai engine: the model id sent to the server (required with ENGINE=openai)",
        "inference",
    )
    openai_api_key: str = var(
        "",
        "openai engine: API key sent as `Authorization: Bearer` (empty: none); never logged",
        "inference",
        secret=True,
    )
    openai_allowed_base_urls: str = var(
        "",
        "Comma-separated base URLs PUT /api/workers/{id}/model may point an openai worker at, "
        "besides OPENAI_BASE_URL (the API key goes to them)",
        "inference",
    )
    openai_timeout: float = var(
        60.0,
        "openai engine: seconds to wait for the server to answer, and between two streamed chunks",
        "inference",
        lo=1,
        hi=3600,
    )
    openai_retries: int = var(
        4,
        "openai engine: tries of a request on 429, 5xx or a lost connection before it fails",
        "inference",
        lo=1,
        hi=20,
    )
    openai_image_max_edge: int = var(
        0,
        "openai engine: frames with a longer edge are downscaled to it before sending (0: sent "
        "as stored)",
        "inference",
        lo=0,
        hi=7680,
    )
    openai_temperature: float = var(
        0.7, "openai engine: sampling temperature sent to the server", "inference", lo=0, hi=2
    )
    max_batch: int = var(
        1,
        "minicpmo engine: most sources decoded together in the running batch (1: one at a time)",
        "inference",
        lo=1,
        hi=64,
    )
    batch_wait: float = var(
        0.0,
        "Seconds a new batch waits for another held source about to become due (0: start now)",
        "inference",
        lo=0,
        hi=10,
    )
