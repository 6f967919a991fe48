"""Request and response bodies of the API.

Request bodies forbid unknown fields, so a typo is an error naming the field instead of a
silently ignored value. Static limits live in the types; limits that come from settings
(INSTRUCTION_MAX_CHARS) are checked by the service, which names the field too.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from shared.delivery import DeliveryStatus
from shared.status_records import ProducerStatus, SourceStats, WorkerBeat

SourceName = Annotated[
    str, Meta(min_length=1, max_length=63, examples=["cam1"], description="Source name")
]
OptionValue = str | int | float | bool


class Request(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of request bodies: unknown fields are rejected."""


class InstructionIn(Request):
    instruction: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=10_000,
            examples=["Count the people and say what they carry."],
            description="New instruction (at most INSTRUCTION_MAX_CHARS characters)",
        ),
    ]


class SourceIn(Request):
    name: SourceName
    url: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=2048,
            examples=["rtsp://camera.local:8554/stream", "samples/street.mp4"],
            description="Video file path, http(s):// or rtsp:// URL, or a webcam device",
        ),
    ]
    options: Annotated[
        dict[str, OptionValue],
        Meta(max_length=32, examples=[{"loop": True}], description="Capture options"),
    ] = msgspec.field(default_factory=dict)


class AskIn(Request):
    question: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=10_000,
            examples=["What colour is the car on the left?"],
            description="One-off question about the current frames",
        ),
    ]


class SourceOut(msgspec.Struct):
    name: str
    url: str
    instruction: str
    instruction_rev: int
    created_at: float
    state: str | None = None  # the producer's: connecting, live, reconnecting, stopped, failed
    error: str | None = None  # why it is not live (a failed source keeps it until removed)


class SourcesOut(msgspec.Struct):
    sources: list[SourceOut]


class InstructionOut(msgspec.Struct):
    source: str
    instruction: str
    rev: int


class JobAccepted(msgspec.Struct):
    job_id: str
    link: str


class JobOut(msgspec.Struct, omit_defaults=True):
    job_id: str
    source: str
    question: str
    status: Annotated[str, Meta(examples=["queued", "in_progress", "complete", "failed"])]
    answer: str | None = None
    error: str | None = None


class SourceAdded(msgspec.Struct):
    name: str
    job_id: str


class HistoryItem(msgspec.Struct):
    id: str
    cycle: str
    status: str
    kind: str
    text: str
    instruction: str
    worker: str
    started_at: float
    duration_ms: float
    latency_ms: float
    tokens: int
    question: str
    job_id: str
    frame_seqs: list[int]  # the window's frames, oldest first
    frame_ts: list[float]  # capture time of each, epoch seconds
    snapshot: bool  # the window's newest frame is at .../history/{id}/snapshot.jpg


class HistoryOut(msgspec.Struct):
    source: str
    items: list[HistoryItem]
    # Pass as `before` for the next page; None when the range holds no more entries.
    next_before: str | None = None


class SourceStatus(msgspec.Struct):
    name: str
    producer: ProducerStatus | None
    worker: str | None
    worker_status: WorkerBeat | None
    stats: SourceStats
    tts: bool
    last_commentary_at: float | None
    viewers: int
    model: str | None = None  # the model the source requires (None: any)
    model_note: str | None = None  # e.g. that no live worker serves the required model


class StatusOut(msgspec.Struct):
    sources: list[SourceStatus]
    workers: dict[str, WorkerBeat]
    viewers: int
    alerts: DeliveryStatus | None = None  # alert delivery: processes, webhook queue, dead letters


class ConfigOut(msgspec.Struct):
    stream_delay_init: float
    display_fps: float
    auth_required: bool
    instruction_max_chars: int
    max_frame_bytes: int
    sample_rate: int


class HealthOut(msgspec.Struct):
    status: str
    redis: bool


class ErrorOut(msgspec.Struct, omit_defaults=True):
    error: str
    status: int
    field: str | None = None


class TokenIn(Request):
    """What a media token is for: one source, and whether it may also send frames."""

    source: Annotated[
        str,
        Meta(
            pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$",
            examples=["cam1"],
            description="The one source whose media URLs the token opens",
        ),
    ]
    scope: Annotated[
        Literal["media", "ingest"],
        Meta(
            description="`media`: events, MJPEG, frame, audio; `ingest`: also the ingest "
            "WebSocket (control keys only)"
        ),
    ] = "media"
    ttl: (
        Annotated[
            float,
            Meta(
                gt=0,
                description="Seconds of life (default MEDIA_TOKEN_TTL, at most MEDIA_TOKEN_MAX_TTL)",
            ),
        ]
        | None
    ) = None


class TokenOut(msgspec.Struct):
    """A short-lived token to put in media URLs as `?token=` instead of the API key."""

    token: str
    scope: str
    source: str
    expires_at: float


class LivekitTokenIn(Request):
    """What a LiveKit room token is for: watching, or also sending a camera."""

    publish: Annotated[
        bool,
        Meta(
            description="Also publish a camera into the room, which becomes the source's "
            "producer (control keys only)"
        ),
    ] = False


class LivekitTokenOut(msgspec.Struct):
    """A LiveKit token for one source's room, and where to use it."""

    token: str
    url: str  # the LiveKit server (LIVEKIT_PUBLIC_URL or LIVEKIT_URL)
    room: str
    identity: str
    can_publish: bool
    expires_at: float  # joining is allowed until then (epoch s)
