"""Commentary to LiveKit data messages, and the source's bus messages to the bridge's parts.

A LiveKit client gets on topic `lookout` (`shared.livekit_rooms.DATA_TOPIC`) exactly the JSON
an SSE viewer gets in `data:`: text chunks (`type` text), cycle events (`type` cycle, `event`
the step) and source notices (`type` notice). Speech goes to the audio buffer instead, and an
`interrupted` cycle cuts its speech there.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import msgspec

from bridge.audio import SpeechBuffer
from shared.bus import Subscription, source_channels
from shared.keys import Keys
from shared.messages import (
    PCM_RATE,
    AnyMessage,
    AudioChunk,
    CycleEvent,
    CycleInterrupted,
    SourceNotice,
    TextChunk,
)

log = logging.getLogger(__name__)

_json = msgspec.json.Encoder()
SendData = Callable[[bytes], Awaitable[None]]


def data_payload(message: AnyMessage) -> bytes | None:
    """The JSON a LiveKit client receives for `message` (the SSE `data:`), None for speech
    and commands, which are not data messages."""
    if isinstance(message, TextChunk | CycleEvent | SourceNotice):
        return _json.encode(message)
    return None


class MessageRouter:
    """Routes one source's bus messages: speech to the buffer, the rest to the room as data."""

    def __init__(self, source: str, speech: SpeechBuffer, send: SendData) -> None:
        self.source = source
        self._speech = speech
        self._send = send
        self.sent = 0
        self.failed = 0
        self.cut_bytes = 0
        self.subscription: Subscription | None = None
        self.on_cut: Callable[[], None] | None = None  # also drop what the SDK has queued

    async def route(self, message: AnyMessage) -> None:
        if isinstance(message, AudioChunk):
            if message.sample_rate != PCM_RATE:
                log.warning("%s: dropped a %d Hz audio chunk", self.source, message.sample_rate)
                return
            self._speech.add(message.cycle, message.pcm)
            return
        if isinstance(message, CycleInterrupted):
            self.cut_bytes += self._speech.cut(message.cycle)
            if self.on_cut is not None:
                self.on_cut()
        payload = data_payload(message)
        if payload is None:
            return
        try:
            await self._send(payload)
        except Exception as exc:  # a room that is going away: its disconnect ends the session
            self.failed += 1
            log.warning("%s: data message not sent: %s", self.source, exc)
            return
        self.sent += 1

    async def run(self, redis_url: str, keys: Keys, cluster: bool = False) -> None:
        """Route every message of the source's channels until cancelled."""
        self.subscription = Subscription(
            redis_url, source_channels(keys, self.source), cluster=cluster
        )
        async for _, message in self.subscription.messages():
            await self.route(message)
