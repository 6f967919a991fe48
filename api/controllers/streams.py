"""Live streams of a source: SSE events, MJPEG, the newest JPEG, PCM speech, frame ingest."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, Response, WebSocket, get, websocket
from litestar.params import Parameter

from api import routes
from api.audio import (
    WAV_SECONDS_MAX,
    opus_body,
    pcm_body,
    speech_enabled,
    wav_body,
    wav_size,
)
from api.auth import CONTROL, require_scope
from api.controllers import MEDIA_SECURED, errors
from api.errors import Conflict, FieldError, ServiceUnavailable
from api.frames import MJPEG_BOUNDARY
from api.history_search import is_history_id
from api.ingest import ingest_frames
from api.live import LiveStream
from api.services import SourceService
from api.state import AppState
from api.streams import EventStream, mjpeg_body
from api.tokens import INGEST, MEDIA
from shared.messages import PCM_RATE

LastEventId = Annotated[
    str | None,
    Parameter(
        header="Last-Event-ID",
        required=False,
        description="Resume after this history id (sent by browsers on reconnect)",
    ),
]
AudioFormat = Annotated[
    Literal["pcm", "opus", "wav"],
    Parameter(query="format", description="pcm (raw s16le), opus (Ogg/Opus) or wav (a clip)"),
]
ClipSeconds = Annotated[
    int,
    Parameter(ge=1, le=WAV_SECONDS_MAX, description="Length of a format=wav clip (seconds)"),
]
TTS_OFF = (
    "source {name!r} is not spoken: text-to-speech is off. Start the worker with "
    "ENABLE_TTS=true (the CPU engine also needs espeak-ng installed) to hear commentary."
)
NO_CACHE = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


class StreamsController(Controller):
    tags = ["streams"]
    guards = [require_scope]
    security = MEDIA_SECURED

    @get(
        routes.EVENTS,
        name="streams:events",
        operation_id="streamEvents",
        opt={"token": MEDIA},
        media_type="text/event-stream",
        responses=errors(401, 403, 404, 422),
    )
    async def events(
        self, name: str, service: SourceService, lookout: AppState, last_event_id: LastEventId
    ) -> LiveStream:
        """Server-sent events: `chunk` (text as generated), `cycle`, `commentary` (history,
        with ids), `notice`, `reconnected`. `Last-Event-ID` resumes from the history."""
        await service.require(name)
        if last_event_id is not None and not is_history_id(last_event_id):
            raise FieldError("Last-Event-ID", "expected a history id like 1700000000000-0")
        stream = EventStream(lookout, name, last_event_id)
        return LiveStream(stream.body(), media_type="text/event-stream", headers=NO_CACHE)

    @get(
        routes.MJPEG,
        name="streams:mjpeg",
        operation_id="streamMjpeg",
        opt={"token": MEDIA},
        media_type=f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}",
        responses=errors(401, 403, 404),
    )
    async def mjpeg(self, name: str, service: SourceService, lookout: AppState) -> LiveStream:
        """Motion JPEG of the newest frames, each sent as it arrives (use in an <img>)."""
        await service.require(name)
        return LiveStream(
            mjpeg_body(lookout, name),
            media_type=f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}",
            headers=NO_CACHE,
        )

    @get(
        routes.FRAME,
        name="streams:frame",
        operation_id="getFrame",
        opt={"token": MEDIA},
        media_type="image/jpeg",
        responses=errors(401, 403, 404, 503),
    )
    async def frame(self, name: str, service: SourceService, lookout: AppState) -> Response[bytes]:
        """The newest JPEG frame of the source."""
        await service.require(name)
        frame = await lookout.newest_frame(name)
        if frame is None:
            raise ServiceUnavailable(
                detail=f"no frame yet from source {name!r}", headers={"Retry-After": "1"}
            )
        headers = {**NO_CACHE, "X-Frame-Seq": str(frame.seq), "X-Frame-Ts": f"{frame.ts:.3f}"}
        return Response(frame.jpeg, media_type="image/jpeg", headers=headers)

    @get(
        routes.AUDIO,
        name="streams:audio",
        operation_id="streamAudio",
        opt={"token": MEDIA},
        media_type="audio/pcm",
        responses=errors(401, 403, 404, 409, 422),
    )
    async def audio(
        self,
        name: str,
        service: SourceService,
        lookout: AppState,
        audio_format: AudioFormat = "pcm",
        seconds: ClipSeconds = 10,
    ) -> LiveStream:
        """Speech. `pcm` (default): raw 48 kHz mono s16le, as spoken (`ffplay -f s16le -ar 48000
        -ch_layout mono`); `opus`: an endless Ogg/Opus stream that plays in `<audio>`; `wav`: a
        finite clip of `seconds`, ending early with silence if less is said meanwhile. 409 when
        the source is not spoken (TTS off)."""
        await service.require(name)
        if not await speech_enabled(lookout, name):
            raise Conflict(detail=TTS_OFF.format(name=name))
        if audio_format == "opus":
            body, media = opus_body(lookout, name), "audio/ogg; codecs=opus"
            return LiveStream(body, media_type=media, headers=NO_CACHE)
        if audio_format == "wav":
            headers = {**NO_CACHE, "Content-Length": str(wav_size(seconds))}
            return LiveStream(
                wav_body(lookout, name, seconds), media_type="audio/wav", headers=headers
            )
        headers = {
            **NO_CACHE,
            "X-Audio-Format": "s16le",
            "X-Audio-Sample-Rate": str(PCM_RATE),
            "X-Audio-Channels": "1",
        }
        media = f"audio/pcm;rate={PCM_RATE};channels=1;format=s16le"
        return LiveStream(pcm_body(lookout, name), media_type=media, headers=headers)

    @websocket(routes.INGEST, name="streams:ingest", opt={"scope": CONTROL, "token": INGEST})
    async def ingest(self, socket: WebSocket[Any, Any, Any], name: str, lookout: AppState) -> None:
        """Binary messages, one JPEG each, become frames of source `name` (a webcam)."""
        await ingest_frames(socket, lookout, name)
