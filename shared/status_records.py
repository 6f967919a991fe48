"""Status hashes of Lookout's processes: producer status, source statistics, heartbeats.

Flat fields readable with `redis-cli`, read back through the same typed `to_fields` /
`from_fields` pair as stream records (shared/records.py), so the API shows typed values.
"""

from __future__ import annotations

import re

import msgspec

from shared.record_fields import Fields, decode_hash, number_field, text_field


class ProducerStatus(msgspec.Struct, frozen=True, kw_only=True):
    """A producer's status hash (`Keys.producer_status`), as written and as the API shows it."""

    state: str  # connecting | live | reconnecting | stopped (the API adds failed)
    kind: str = ""
    url: str = ""  # redacted
    fps: float = 0.0  # frames published per second over the last few seconds
    last_frame_ts: float = 0.0
    frames: int = 0
    attempt: int = 0  # reconnect attempts since the last frame
    error: str = ""
    pid: int = 0
    host: str = ""
    updated_at: float = 0.0

    def to_fields(self) -> dict[str, str]:
        return {
            "state": self.state,
            "kind": self.kind,
            "url": self.url,
            "fps": f"{self.fps:.2f}",
            "last_frame_ts": f"{self.last_frame_ts:.3f}",
            "frames": str(self.frames),
            "attempt": str(self.attempt),
            "error": self.error,
            "pid": str(self.pid),
            "host": self.host,
            "updated_at": f"{self.updated_at:.3f}",
        }

    @classmethod
    def from_fields(cls, fields: Fields) -> ProducerStatus:
        return cls(
            state=text_field(fields, "state"),
            kind=text_field(fields, "kind", ""),
            url=text_field(fields, "url", ""),
            fps=number_field(fields, "fps", float, 0.0),
            last_frame_ts=number_field(fields, "last_frame_ts", float, 0.0),
            frames=number_field(fields, "frames", int, 0),
            attempt=number_field(fields, "attempt", int, 0),
            error=text_field(fields, "error", ""),
            pid=number_field(fields, "pid", int, 0),
            host=text_field(fields, "host", ""),
            updated_at=number_field(fields, "updated_at", float, 0.0),
        )


class SourceStats(msgspec.Struct, frozen=True, kw_only=True):
    """A source's cycle statistics (`Keys.worker_stats`), kept by whichever worker serves it."""

    cycles: int = 0
    skipped: int = 0
    interrupted: int = 0
    failed: int = 0
    answers: int = 0
    last_latency_ms: float = 0.0
    mean_latency_ms: float = 0.0
    latency_count: int = 0
    latency_sum_ms: float = 0.0
    last_commentary_ts: float = 0.0
    worker: str = ""  # the worker that wrote last

    @classmethod
    def from_fields(cls, fields: Fields) -> SourceStats:
        """The hash as HGETALL returns it; missing counters are 0 (written by HINCRBY)."""
        counters = ("cycles", "skipped", "interrupted", "failed", "answers", "latency_count")
        floats = ("last_latency_ms", "mean_latency_ms", "latency_sum_ms", "last_commentary_ts")
        return cls(
            **{name: number_field(fields, name, int, 0) for name in counters},
            **{name: number_field(fields, name, float, 0.0) for name in floats},
            worker=text_field(fields, "worker", ""),
        )


class WorkerBeat(msgspec.Struct, frozen=True, kw_only=True):
    """A worker's heartbeat hash (`Keys.worker_status`), as written and as the API shows it.

    The hash is flat for `redis-cli`: the engine's own fields (`tts`, `decode`, `vram_*`, ...)
    sit beside the fixed ones and are read back into `extra`: decimal numbers as numbers, the
    rest as text, so the API's status shows `"vram_allocated_mib": 1234`, not `"1234"`.
    """

    worker: str = ""
    engine: str = ""
    checkpoint: str = ""
    dtype: str = ""
    device: str = ""
    load_seconds: float = 0.0
    pid: int = 0
    host: str = ""
    sources: list[str] = []
    cycles: int = 0
    started_at: float = 0.0
    beat_ts: float = 0.0  # epoch seconds of the last beat; leases count workers by it
    model: str = ""  # the model id it serves (sources requiring it go to it)
    modalities: list[str] = []  # what it takes and gives: image, text, speech
    tokens_per_s: float = 0.0  # measured over its recent answers (0: none yet)
    server: str = ""  # ENGINE=openai: the server's base URL (password removed)
    server_models: list[str] = []  # ENGINE=openai: what the server's /models lists
    extra: dict[str, str | int | float] = {}

    def to_fields(self) -> dict[str, str]:
        fields = {name: str(value) for name, value in self.extra.items() if name not in BEAT_FIELDS}
        fields.update(
            worker=self.worker,
            engine=self.engine,
            checkpoint=self.checkpoint,
            dtype=self.dtype,
            device=self.device,
            load_seconds=f"{self.load_seconds:.2f}",
            pid=str(self.pid),
            host=self.host,
            sources=",".join(self.sources),
            cycles=str(self.cycles),
            started_at=f"{self.started_at:.3f}",
            beat_ts=f"{self.beat_ts:.3f}",
            model=self.model,
            modalities=",".join(self.modalities),
            tokens_per_s=f"{self.tokens_per_s:.2f}",
            server=self.server,
            server_models=",".join(self.server_models),
        )
        return fields

    @classmethod
    def from_fields(cls, fields: Fields) -> WorkerBeat:
        text = decode_hash(fields)
        return cls(
            worker=text.get("worker", ""),
            engine=text.get("engine", ""),
            checkpoint=text.get("checkpoint", ""),
            dtype=text.get("dtype", ""),
            device=text.get("device", ""),
            load_seconds=number_field(fields, "load_seconds", float, 0.0),
            pid=number_field(fields, "pid", int, 0),
            host=text.get("host", ""),
            sources=[s for s in text.get("sources", "").split(",") if s],
            cycles=number_field(fields, "cycles", int, 0),
            started_at=number_field(fields, "started_at", float, 0.0),
            beat_ts=number_field(fields, "beat_ts", float, 0.0),
            model=text.get("model", ""),
            modalities=[m for m in text.get("modalities", "").split(",") if m],
            tokens_per_s=number_field(fields, "tokens_per_s", float, 0.0),
            server=text.get("server", ""),
            server_models=[m for m in text.get("server_models", "").split(",") if m],
            extra={k: _scalar(v) for k, v in text.items() if k not in BEAT_FIELDS},
        )

    @property
    def tts(self) -> bool | None:
        """Whether the engine speaks (its `tts` field), None when it does not say."""
        flag = str(self.extra.get("tts", ""))
        return flag.lower() in ("1", "true", "on") if flag else None


_INT_RE = re.compile(r"-?\d{1,18}")
_FLOAT_RE = re.compile(r"-?\d{1,18}\.\d{1,18}")


def _scalar(text: str) -> str | int | float:
    """A hash value as a JSON scalar: plain decimal integers and decimals as numbers (never
    'nan', 'inf' or '1e5', which stay text), everything else as written."""
    if _INT_RE.fullmatch(text):
        return int(text)
    if _FLOAT_RE.fullmatch(text):
        return float(text)
    return text


# The hash fields WorkerBeat names; any other field of the hash is the engine's (`extra`).
BEAT_FIELDS = frozenset(WorkerBeat.__struct_fields__) - {"extra"}


class LivekitBeat(msgspec.Struct, frozen=True, kw_only=True):
    """A LiveKit bridge's heartbeat hash (`Keys.livekit_bridge`): the rooms it serves."""

    rooms: str = ""  # comma-separated source names whose rooms it holds
    errors: str = ""  # `source: error` of rooms it cannot join now, `; `-separated
    pid: int = 0
    host: str = ""
    updated_at: float = 0.0

    def to_fields(self) -> dict[str, str]:
        return {
            "rooms": self.rooms,
            "errors": self.errors,
            "pid": str(self.pid),
            "host": self.host,
            "updated_at": f"{self.updated_at:.3f}",
        }

    @classmethod
    def from_fields(cls, fields: Fields) -> LivekitBeat:
        return cls(
            rooms=text_field(fields, "rooms", ""),
            errors=text_field(fields, "errors", ""),
            pid=number_field(fields, "pid", int, 0),
            host=text_field(fields, "host", ""),
            updated_at=number_field(fields, "updated_at", float, 0.0),
        )
