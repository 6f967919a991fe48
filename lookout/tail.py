"""`lookout tail SOURCE`: print every message of a source as it crosses Redis.

Subscribes to the source's text, audio, events and control channels and prints one decoded
line per message, so what the worker and API say to each other can be watched live. A
malformed payload is printed as such (with the reason) and tail goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import TYPE_CHECKING

from shared.settings import Settings

if TYPE_CHECKING:
    from shared.bus import Subscription
    from shared.source_subscriptions import SourceSubscriptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="source name, or * for every source")
    parser.add_argument(
        "--count", type=int, default=0, help="exit after this many messages (0: run until Ctrl-C)"
    )


CYCLE_DETAILS = (
    "latency_ms", "frame_seqs", "tokens", "duration_ms", "reason", "error", "history_id", "text"
)  # fmt: skip
CYCLE_LABELS = {"frame_seqs": "frames"}


def format_message(channel: str, message: object) -> str:
    """One readable line for a decoded message (PCM shown as its length and duration)."""
    from shared.messages import (
        AlertEvent,
        AudioChunk,
        CycleEvent,
        InstructionChanged,
        SourceNotice,
        TextChunk,
    )

    clock = time.strftime("%H:%M:%S")
    if isinstance(message, TextChunk):
        tag = f" answer to {message.question!r}" if message.kind == "answer" else ""
        return f"{clock} {message.source} text  cycle={message.cycle} #{message.seq}{tag}: {message.text}"
    if isinstance(message, AudioChunk):
        seconds = len(message.pcm) / 2 / message.sample_rate
        return f"{clock} {message.source} audio cycle={message.cycle} #{message.seq}: {len(message.pcm)} bytes ({seconds:.2f}s)"
    if isinstance(message, CycleEvent):
        # Each step has only its own fields; shown in this order, the text last.
        details = {
            CYCLE_LABELS.get(name, name): value
            for name in CYCLE_DETAILS
            if (value := getattr(message, name, None)) not in (None, [])
        }
        extra = " ".join(
            f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in details.items()
        )
        return (
            f"{clock} {message.source} cycle cycle={message.cycle} {message.event} {extra}".rstrip()
        )
    if isinstance(message, InstructionChanged):
        return f"{clock} {message.source} instruction rev={message.rev}: {message.instruction}"
    if isinstance(message, SourceNotice):
        return f"{clock} {message.source} notice {message.what} {message.detail}".rstrip()
    if isinstance(message, AlertEvent):
        return f"{clock} {message.source} alert {message.state} rule={message.rule!r} id={message.alert_id}"
    return f"{clock} {channel}: {message!r}"


async def tail(settings: Settings, source: str, count: int) -> int:
    from shared.bus import Subscription
    from shared.keys import Keys, validate_source_name
    from shared.source_subscriptions import SourceSubscriptions, registered_sources

    keys = Keys(settings.key_prefix)

    def channels(name: str) -> list[str]:
        return [
            keys.text_channel(name),
            keys.audio_channel(name),
            keys.events_channel(name),
            keys.control_channel(name),
        ]

    if source != "*":
        validate_source_name(source)
    print(f"tailing {source} on {settings.redis_url} (prefix {settings.key_prefix}); Ctrl-C stops")
    if source == "*" and settings.redis_cluster:
        # Sharded pub/sub has no patterns: follow every registered source on its shard.
        async with registered_sources(settings.redis_url, keys) as names:
            return await _print(SourceSubscriptions(settings.redis_url, channels, names), count)
    if source == "*":
        patterns = [keys.text_channel("*"), keys.audio_channel("*"), keys.events_channel("*")]
        patterns.append(keys.control_pattern)
        return await _print(Subscription(settings.redis_url, patterns=patterns), count)
    return await _print(
        Subscription(settings.redis_url, channels(source), cluster=settings.redis_cluster), count
    )


async def _print(subscription: Subscription | SourceSubscriptions, count: int) -> int:
    seen = 0
    async for channel, message in subscription.messages():
        print(format_message(channel, message), flush=True)
        seen += 1
        if count and seen >= count:
            break
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return asyncio.run(tail(settings, args.source, args.count))
    except ValueError as exc:
        print(f"lookout tail: {exc}")
        return 2
