"""One source's room, joined: speech, video and commentary out, cameras in.

A session publishes two tracks (speech from `AudioPacer`, frames from `VideoPump`), routes the
source's bus messages (`MessageRouter`) and turns cameras that participants publish into the
source's producer (`CameraIn`). It ends when the room disconnects or it is stopped; the bridge
(bridge/service.py) then joins again with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import redis.asyncio as aioredis
from livekit import rtc

from bridge.audio import AudioPacer, Clock, SpeechBuffer
from bridge.camera import CameraIn, CameraRefused, frames_of
from bridge.data import MessageRouter, data_payload
from bridge.room import BridgeRoom, CameraEvent
from bridge.video import VideoPump
from shared.keys import Keys
from shared.messages import PCM_RATE, SourceNotice
from shared.settings import Settings

log = logging.getLogger(__name__)

AUDIO_QUEUE_MS = 200  # the SDK's own buffer: above the pacer's lead; cleared on a cut
SPEECH_TRACK = "lookout-speech"
VIDEO_TRACK = "lookout-video"


@dataclass
class RunningCamera:
    """A participant's camera feeding the source."""

    task: asyncio.Task[str]
    stop: asyncio.Event
    stream: rtc.VideoStream


class SourceSession:
    """The bridge's work in the room of `source` while it is joined."""

    def __init__(
        self,
        redis: aioredis.Redis,
        settings: Settings,
        source: str,
        room: BridgeRoom,
        bridge_id: str,
        clock: Clock | None = None,
    ) -> None:
        self._redis = redis
        self._settings = settings
        self.source = source
        self.room = room
        self._bridge_id = bridge_id
        self.speech = SpeechBuffer()
        self.router = MessageRouter(source, self.speech, room.send_data)
        self._clock = clock
        self.pacer: AudioPacer | None = None
        self.video: VideoPump | None = None
        self.cameras: dict[str, RunningCamera] = {}
        self.joined = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> str:
        """Join and serve the room until `stop` or a disconnect; RoomError if it cannot join."""
        await self.room.connect()
        audio = rtc.AudioSource(PCM_RATE, 1, queue_size_ms=AUDIO_QUEUE_MS)
        edge = self._settings.max_frame_edge
        video = rtc.VideoSource(edge, edge)  # the most a frame can be: never scaled up to fit
        ended = asyncio.Event()
        tasks: list[asyncio.Task[object]] = []
        try:
            await self.room.publish(rtc.LocalAudioTrack.create_audio_track(SPEECH_TRACK, audio))
            await self.room.publish(rtc.LocalVideoTrack.create_video_track(VIDEO_TRACK, video))
            self.pacer = AudioPacer(self.speech, audio.capture_frame, self._clock)
            self.router.on_cut = audio.clear_queue
            self.video = VideoPump(self._redis, self._settings, self.source, video.capture_frame)
            keys = Keys(self._settings.key_prefix)
            tasks = [
                asyncio.create_task(self.pacer.run(ended)),
                asyncio.create_task(self.video.run(ended)),
                asyncio.create_task(
                    self.router.run(self._settings.redis_url, keys, self._settings.redis_cluster)
                ),
                asyncio.create_task(self._watch_cameras(ended)),
            ]
            self.joined.set()
            log.info("%s: serving LiveKit room %s", self.source, self.room.name)
            return await _until_over(stop, self.room.disconnected, tasks)
        finally:
            ended.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for identity in list(self.cameras):
                await self._stop_camera(identity)
            with contextlib.suppress(Exception):  # leaving a broken connection may fail too
                await self.room.close()
            await audio.aclose()
            await video.aclose()

    async def _watch_cameras(self, ended: asyncio.Event) -> None:
        while not ended.is_set():
            event = await self.room.cameras.get()
            await self._forget_finished()
            if event.track is None:
                await self._stop_camera(event.identity)
            elif self._settings.livekit_camera_in:
                await self._start_camera(event)

    async def _start_camera(self, event: CameraEvent) -> None:
        assert event.track is not None
        await self._stop_camera(event.identity)  # the same participant published again
        camera = CameraIn(self._redis, self._settings, self.source, self._bridge_id, event.identity)
        try:
            await camera.take()
        except CameraRefused as exc:
            log.warning("%s: camera of %s refused: %s", self.source, event.identity, exc)
            notice = SourceNotice(source=self.source, what="camera_refused", detail=str(exc))
            payload = data_payload(notice)
            assert payload is not None  # a notice always has one
            try:
                await self.room.send_data(payload, to=[event.identity])
            except Exception as send_error:  # the participant left meanwhile: nobody to tell
                log.warning(
                    "%s: refusal not sent to %s: %s", self.source, event.identity, send_error
                )
            return
        log.info("%s: camera of %s is the source's producer now", self.source, event.identity)
        stream = rtc.VideoStream(event.track, capacity=1, format=rtc.VideoBufferType.RGBA)
        stop = asyncio.Event()
        task = asyncio.create_task(camera.run(frames_of(stream), stop))
        self.cameras[event.identity] = RunningCamera(task, stop, stream)

    async def _stop_camera(self, identity: str) -> None:
        running = self.cameras.pop(identity, None)
        if running is None:
            return
        running.stop.set()
        running.task.cancel()
        await asyncio.gather(running.task, return_exceptions=True)  # status stopped, claim freed
        await running.stream.aclose()

    async def _forget_finished(self) -> None:
        """Drop cameras that ended by themselves (track ended, claim lost, source removed)."""
        for identity in [i for i, c in self.cameras.items() if c.task.done()]:
            await self._stop_camera(identity)


async def _until_over(
    stop: asyncio.Event, disconnected: asyncio.Event, tasks: list[asyncio.Task[object]]
) -> str:
    """Wait for a stop, a disconnect or a part that ended (raising what it raised)."""
    watchers: dict[asyncio.Future[object], str] = {
        asyncio.create_task(stop.wait()): "stopped",
        asyncio.create_task(disconnected.wait()): "disconnected",
    }
    try:
        done, _ = await asyncio.wait([*watchers, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for watcher in watchers:
            watcher.cancel()
    for task in done:
        if task in watchers:
            return watchers[task]
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error
    return "a part ended"
