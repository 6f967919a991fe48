"""Every setting Lookout reads, from the environment and an optional `.env` file.

One frozen `Settings` object is built once at process start by `load_settings()`
(`shared/settings_env.py`, which also reads `.env` files). Each field
carries its environment variable name, its allowed range and a one-line doc in `metadata`, so
validation, `.env.example` and `docs/configuration.md` all come from this single table.
A bad value stops the process with the variable's name and what is allowed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

ENGINES = ("cpu", "minicpmo", "transformers", "openai")
ENGINE_DEVICES = ("auto", "cuda", "cpu")
RTSP_TRANSPORTS = ("tcp", "udp")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
AUTO_MIN_INGEST_PIXELS = 4096 * 2160  # a 4K camera frame, decoded: 26.5 MB of BGR
SOURCE_SCHEMES = ("rtsp", "rtsps", "http", "https", "file", "device")  # see shared/urlpolicy.py
OPENAI_SPEECH = ("local", "server", "off")  # see worker/engines/openai_engine.py


class SettingsError(ValueError):
    """A variable has a value outside what Lookout accepts; the message names it."""


def _var(
    default: Any,
    doc: str,
    group: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[str, ...] | None = None,
    secret: bool = False,
) -> Any:
    return field(
        default=default,
        repr=not secret,  # a logged or printed Settings never shows a key
        metadata={
            "doc": doc,
            "group": group,
            "lo": lo,
            "hi": hi,
            "choices": choices,
            "secret": secret,
        },
    )


@dataclass(frozen=True)
class Settings:
    """All configuration. Field names are the lower-case environment variable names."""

    # --- Redis bus ---
    redis_url: str = _var(
        "redis://127.0.0.1:6379/0",
        "Redis server every process talks through (redis://, rediss://, unix://, or "
        "redis+sentinel://HOST:PORT[,HOST:PORT]/SERVICE for the master Sentinel names)",
        "redis",
    )
    key_prefix: str = _var(
        "lookout",
        "Prefix of every Redis key and channel (two deployments can share one Redis)",
        "redis",
    )
    frames_maxlen: int = _var(
        300,
        "Approximate MAXLEN of each source's frames stream (entries)",
        "redis",
        lo=10,
        hi=100_000,
    )
    history_maxlen: int = _var(
        1000,
        "Approximate MAXLEN of each source's commentary history stream",
        "redis",
        lo=10,
        hi=1_000_000,
    )
    heartbeat_ttl: float = _var(
        10.0, "Seconds a process status key lives without a heartbeat", "redis", lo=2, hi=300
    )
    redis_cluster: bool = _var(
        False,
        "REDIS_URL is a node of a Redis Cluster: connect with the cluster client and use "
        "sharded pub/sub (no job queues: asks and supervised sources are refused)",
        "redis",
    )
    snapshot_max_bytes: int = _var(
        32768,
        "Largest snapshot kept beside each history entry (the window's newest JPEG, shrunk to "
        "fit; trimmed with the history, so at most HISTORY_MAXLEN of them a source); 0: none",
        "redis",
        lo=0,
        hi=4_000_000,
    )

    # --- HTTP server ---
    server_host: str = _var(
        "127.0.0.1", "Address the API binds to (0.0.0.0 inside containers)", "server"
    )
    server_port: int = _var(8199, "Port the API listens on", "server", lo=1, hi=65535)
    cors_origins: str = _var(
        "",
        "Comma-separated origins allowed by CORS, and the only foreign `Origin`s accepted on "
        "state-changing requests and the ingest WebSocket (empty: same origin only)",
        "server",
    )
    allowed_hosts: str = _var(
        "",
        "Comma-separated host names the API answers to (`Host` header, port ignored) besides "
        "localhost, 127.0.0.1, ::1 and SERVER_HOST; `*` allows any. Guards against DNS rebinding",
        "server",
    )
    allow_open: bool = _var(
        False,
        "Allow listening on a non-loopback address with no API keys (anyone who reaches the "
        "port may control Lookout)",
        "server",
    )
    api_keys: str = _var(
        "",
        "API keys as `key:scope` pairs, comma-separated; scope is view or control (empty: no auth)",
        "server",
        secret=True,
    )
    api_keys_file: str = _var("", "File with one `key:scope` per line (adds to API_KEYS)", "server")
    instruction_max_chars: int = _var(
        500, "Longest instruction a client may set", "server", lo=10, hi=10_000
    )
    media_token_ttl: float = _var(
        600.0,
        "Seconds a media token (POST /api/tokens, used as ?token= in URLs) stays valid",
        "server",
        lo=10,
        hi=86_400,
    )
    media_token_max_ttl: float = _var(
        3600.0,
        "Longest lifetime a client may ask for a media token; older-looking tokens are refused",
        "server",
        lo=10,
        hi=86_400,
    )
    sse_replay: int = _var(
        3, "Commentaries replayed from history when an SSE viewer connects", "server", lo=0, hi=100
    )
    sse_keepalive: float = _var(
        15.0, "Seconds between SSE keep-alive comments", "server", lo=1, hi=120
    )
    sse_retry_ms: int = _var(
        2000, "Reconnect delay advertised to SSE clients (ms)", "server", lo=100, hi=60_000
    )
    max_frame_bytes: int = _var(
        2_000_000,
        "Largest JPEG accepted from a client or producer (bytes)",
        "server",
        lo=10_000,
        hi=50_000_000,
    )
    max_ingest_pixels: int = _var(
        0,
        "Largest picture (width x height, read from its header before decoding) accepted from a "
        "client, camera, file or the frames stream (0: MAX_FRAME_EDGE squared, at least 4096x2160)",
        "server",
        lo=0,
        hi=200_000_000,
    )
    viewer_queue: int = _var(
        8,
        "Messages buffered per viewer before a slow viewer starts dropping",
        "server",
        lo=1,
        hi=1000,
    )

    # --- Capture (producers) ---
    capture_fps: float = _var(
        2.0, "Frames per second the worker samples for inference", "capture", lo=0.1, hi=30
    )
    display_fps: float = _var(
        10.0, "Frames per second producers publish and MJPEG viewers get", "capture", lo=1, hi=60
    )
    jpeg_quality: int = _var(80, "JPEG quality of published frames", "capture", lo=10, hi=100)
    max_frame_edge: int = _var(
        1280,
        "Frames are resized so their longest edge is at most this (pixels)",
        "capture",
        lo=64,
        hi=7680,
    )
    loop_files: bool = _var(True, "Video files restart at the end instead of stopping", "capture")
    rtsp_transport: str = _var("tcp", "RTSP transport", "capture", choices=RTSP_TRANSPORTS)
    reconnect_delay: float = _var(
        1.0,
        "First reconnect delay after a source fails (s), doubled each try",
        "capture",
        lo=0.05,
        hi=60,
    )
    max_reconnect_delay: float = _var(
        30.0, "Longest reconnect delay (s)", "capture", lo=0.1, hi=600
    )
    max_read_failures: int = _var(
        10, "Consecutive failed reads before reconnecting", "capture", lo=1, hi=1000
    )
    stall_timeout: float = _var(
        10.0, "Seconds without a frame before a source counts as stalled", "capture", lo=0.5, hi=600
    )
    open_timeout: float = _var(
        10.0, "Seconds allowed to open a network source", "capture", lo=0.5, hi=120
    )
    claim_ttl: float = _var(
        5.0,
        "Seconds a producer supervisor's claim on a source lives without renewal (takeover time)",
        "capture",
        lo=1,
        hi=300,
    )
    max_sources_per_supervisor: int = _var(
        64, "Most sources one producer supervisor captures at once", "capture", lo=1, hi=10_000
    )
    source_schemes: str = _var(
        ",".join(SOURCE_SCHEMES),
        "Kinds of source the API and supervisors accept, comma-separated, from: "
        + ", ".join(SOURCE_SCHEMES),
        "capture",
    )
    source_file_roots: str = _var(
        "var,media",
        "Folders (comma-separated) whose video files may be sources; others are refused",
        "capture",
    )
    source_allow_private: bool = _var(
        True,
        "Network sources may be private addresses (10/8, 192.168/16, fc00::/7 ...): LAN cameras",
        "capture",
    )
    source_allow_loopback: bool = _var(
        False,
        "Network sources may be this host (127.0.0.1, ::1, localhost), where Redis and the API run",
        "capture",
    )

    # --- Inference (worker) ---
    engine: str = _var("cpu", "Commentary engine", "inference", choices=ENGINES)
    model_path: str = _var(
        "models/MiniCPM-o-4_5-awq", "Folder of the model weights (GPU engines)", "inference"
    )
    frames_per_inference: int = _var(
        4, "Frames in each window the model sees", "inference", lo=1, hi=8
    )
    frame_stride: int = _var(
        2, "Take every Nth sampled frame into the window", "inference", lo=1, hi=4
    )
    change_threshold: float = _var(
        5.0,
        "Scene change (mean abs pixel diff) below which a cycle is skipped",
        "inference",
        lo=0,
        hi=50,
    )
    inference_interval: float = _var(
        1.0, "Pause between commentary cycles of one source (s)", "inference", lo=0, hi=600
    )
    max_new_tokens: int = _var(
        512, "Longest commentary in tokens (text only)", "inference", lo=1, hi=8192
    )
    default_instruction: str = _var(
        "Describe what is happening in the video.",
        "Instruction a new source starts with",
        "inference",
    )
    context_commentaries: int = _var(
        1, "Past commentaries carried into the next prompt", "inference", lo=0, hi=10
    )
    context_max_chars: int = _var(
        600, "Longest carried-over context (characters)", "inference", lo=0, hi=10_000
    )
    idle_commentary_interval: float = _var(
        0.0, "Comment on an unchanged scene every N s anyway (0: never)", "inference", lo=0, hi=3600
    )
    max_sources_per_worker: int = _var(
        16, "Most sources one worker comments on", "inference", lo=1, hi=1000
    )
    lease_ttl: float = _var(
        5.0, "Seconds a worker's lease on a source lives without renewal", "inference", lo=1, hi=300
    )
    ask_queue_max: int = _var(
        16, "Most queued one-off questions before the API answers 429", "inference", lo=1, hi=10_000
    )
    ask_timeout: float = _var(
        60.0, "Seconds a one-off question may take", "inference", lo=1, hi=3600
    )
    compile_decode: bool = _var(
        True, "GPU engines compile a static-cache decode step at load", "inference"
    )
    decode_max_len: int = _var(
        2048,
        "Prompt plus answer tokens the GPU engines' static KV cache holds (longer: generate())",
        "inference",
        lo=256,
        hi=32_768,
    )
    decode_temperature: float = _var(
        0.7, "Sampling temperature of the GPU engines (0: greedy)", "inference", lo=0, hi=2
    )
    engine_device: str = _var(
        "auto",
        "Device of the GPU engines (auto: cuda when present; minicpmo takes cpu only up to "
        "CPU_MODEL_MAX_GIB)",
        "inference",
        choices=ENGINE_DEVICES,
    )
    cpu_model_max_gib: float = _var(
        2.0,
        "Largest checkpoint (GiB of weights) ENGINE=minicpmo runs on the CPU (test checkpoints)",
        "inference",
        lo=0,
        hi=1024,
    )
    openai_base_url: str = _var(
        "http://127.0.0.1:8000/v1",
        "openai engine: base URL of the OpenAI-compatible server (vLLM, SGLang, Ollama, "
        "llama.cpp, transformers serve, a hosted API); /chat/completions is added to it",
        "inference",
    )
    openai_model: str = _var(
        "",
        "openai engine: the model id sent to the server (required with ENGINE=openai)",
        "inference",
    )
    openai_api_key: str = _var(
        "",
        "openai engine: API key sent as `Authorization: Bearer` (empty: none); never logged",
        "inference",
        secret=True,
    )
    openai_allowed_base_urls: str = _var(
        "",
        "Comma-separated base URLs PUT /api/workers/{id}/model may point an openai worker at, "
        "besides OPENAI_BASE_URL (the API key goes to them)",
        "inference",
    )
    openai_timeout: float = _var(
        60.0,
        "openai engine: seconds to wait for the server to answer, and between two streamed chunks",
        "inference",
        lo=1,
        hi=3600,
    )
    openai_retries: int = _var(
        4,
        "openai engine: tries of a request on 429, 5xx or a lost connection before it fails",
        "inference",
        lo=1,
        hi=20,
    )
    openai_image_max_edge: int = _var(
        0,
        "openai engine: frames with a longer edge are downscaled to it before sending (0: sent "
        "as stored)",
        "inference",
        lo=0,
        hi=7680,
    )
    openai_temperature: float = _var(
        0.7, "openai engine: sampling temperature sent to the server", "inference", lo=0, hi=2
    )
    max_batch: int = _var(
        1,
        "minicpmo engine: most due sources whose windows run as one batch (1: one at a time)",
        "inference",
        lo=1,
        hi=64,
    )
    batch_wait: float = _var(
        0.0,
        "Seconds a batch waits for another held source about to become due (0: start now)",
        "inference",
        lo=0,
        hi=10,
    )

    # --- Speech ---
    enable_tts: bool = _var(
        False, "Speak commentaries (MiniCPM-o TTS, or espeak-ng with the CPU engine)", "speech"
    )
    tts_float16: bool = _var(True, "Run MiniCPM-o's TTS in float16", "speech")
    ref_audio_path: str = _var(
        "", "Reference voice (WAV) for MiniCPM-o TTS (empty: the checkpoint's assets)", "speech"
    )
    tts_pause_after: float = _var(
        1.0, "Silence after each spoken commentary (s)", "speech", lo=0, hi=30
    )
    tts_max_new_tokens: int = _var(
        150, "Longest commentary in tokens when speaking", "speech", lo=1, hi=4096
    )
    espeak_voice: str = _var("en", "espeak-ng voice of the CPU engine", "speech")
    openai_speech: str = _var(
        "local",
        "openai engine with ENABLE_TTS: `server` asks the server for audio (falls back to local), "
        "`local` speaks the text with espeak-ng, `off` stays silent",
        "speech",
        choices=OPENAI_SPEECH,
    )

    # --- Page ---
    stream_delay_init: float = _var(
        5.0,
        "Video delay (s) the page starts with until it has measured the source's latency (0: live)",
        "page",
        lo=0,
        hi=60,
    )

    # --- Process ---
    log_level: str = _var("INFO", "Log level", "process", choices=LOG_LEVELS)
    log_format: str = _var(
        "text",
        "Log lines as `time level role: message` (text) or one JSON object per line (json: ts, "
        "level, role, logger, message, exc) for log collectors",
        "process",
        choices=LOG_FORMATS,
    )
    worker_id: str = _var(
        "", "Name of this worker in leases and status (empty: host-pid)", "process"
    )
    worker_metrics_port: int = _var(
        0,
        "Port where a worker serves Prometheus metrics at /metrics, on SERVER_HOST (0: off)",
        "process",
        lo=0,
        hi=65535,
    )
    producer_metrics_port: int = _var(
        0,
        "Port where a producer (or supervisor) serves Prometheus metrics at /metrics, on "
        "SERVER_HOST (0: off)",
        "process",
        lo=0,
        hi=65535,
    )

    # --- Watch rules and alerts ---
    alerts_maxlen: int = _var(
        10_000,
        "Approximate MAXLEN of the alerts stream (all sources)",
        "alerts",
        lo=10,
        hi=1_000_000,
    )
    alert_snapshot_ttl: float = _var(
        604_800.0, "How long an alert's snapshot JPEG is kept (s)", "alerts", lo=60, hi=31_536_000
    )
    public_url: str = _var(
        "",
        "Base URL of the API as receivers reach it (e.g. https://lookout.example): webhooks and "
        "MQTT then carry absolute snapshot URLs (empty: paths)",
        "alerts",
    )
    webhook_secret: str = _var(
        "",
        "Key of the HMAC-SHA256 signature of every webhook (X-Lookout-Signature); empty: "
        "webhooks are not sent but dead-lettered",
        "alerts",
        secret=True,
    )
    webhook_timeout: float = _var(
        10.0, "Seconds a webhook endpoint has to answer one delivery", "alerts", lo=0.5, hi=120
    )
    webhook_retry_for: float = _var(
        3600.0,
        "Seconds a webhook is retried (backoff with jitter) before it is dead-lettered",
        "alerts",
        lo=1,
        hi=604_800,
    )
    webhook_backoff_max: float = _var(
        300.0, "Longest wait between two tries of one webhook (s)", "alerts", lo=0.1, hi=3600
    )
    webhook_concurrency: int = _var(
        32, "Webhook deliveries in flight at once (per alerts process)", "alerts", lo=1, hi=1024
    )
    webhook_per_host: int = _var(
        4,
        "Deliveries in flight to one host, so a slow endpoint holds only these",
        "alerts",
        lo=1,
        hi=256,
    )
    webhook_allow_private: bool = _var(True, "Webhooks may go to private (LAN) addresses", "alerts")
    webhook_allow_loopback: bool = _var(
        False, "Webhooks may go to this host's loopback (where Redis and the API listen)", "alerts"
    )
    mqtt_url: str = _var(
        "",
        "MQTT broker of `lookout alerts`, mqtt://[user:password@]host[:port] (empty: no MQTT)",
        "alerts",
        secret=True,
    )
    mqtt_prefix: str = _var("lookout", "Prefix of every MQTT topic Lookout publishes", "alerts")
    mqtt_discovery_prefix: str = _var(
        "homeassistant",
        "Home Assistant's MQTT discovery prefix (empty: no discovery configs)",
        "alerts",
    )

    # --- LiveKit ---
    livekit_url: str = _var(
        "",
        "LiveKit server the bridge (`lookout livekit`) joins, ws:// or wss:// (empty: LiveKit off)",
        "livekit",
    )
    livekit_public_url: str = _var(
        "",
        "LiveKit URL handed to browsers with their tokens (empty: LIVEKIT_URL)",
        "livekit",
    )
    livekit_api_key: str = _var("", "API key of the LiveKit server", "livekit")
    livekit_api_secret: str = _var(
        "", "API secret of the LiveKit server (signs room tokens)", "livekit", secret=True
    )
    livekit_room_prefix: str = _var(
        "lookout-", "A source's LiveKit room is this prefix plus the source name", "livekit"
    )
    livekit_sources: str = _var(
        "*",
        "Sources the bridge brings to LiveKit by default: `*` (all), comma-separated names "
        "(joined even before they exist, for cameras sent in), or empty (none); a source's "
        "`livekit` option overrides it",
        "livekit",
    )
    livekit_token_ttl: float = _var(
        300.0,
        "Seconds a LiveKit room token from POST /api/sources/NAME/livekit-token allows joining",
        "livekit",
        lo=10,
        hi=86_400,
    )
    livekit_max_rooms: int = _var(
        32, "Most rooms one bridge process serves at once", "livekit", lo=1, hi=10_000
    )
    livekit_camera_in: bool = _var(
        True,
        "A camera published in a source's room becomes that source's producer",
        "livekit",
    )

    @property
    def ingest_pixel_limit(self) -> int:
        """MAX_INGEST_PIXELS, or its automatic value: frames are never bigger than the longest
        edge squared, and cameras send up to 4K whatever the edge frames are shrunk to."""
        if self.max_ingest_pixels:
            return self.max_ingest_pixels
        return max(self.max_frame_edge**2, AUTO_MIN_INGEST_PIXELS)
