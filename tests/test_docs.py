"""The docs name what the code has: every key, channel, message field and record field."""

from __future__ import annotations

import inspect
import typing

import msgspec

from shared import messages
from shared.keys import Keys
from shared.records import CommentaryRecord, FrameRecord
from tests.helpers import REPO

ARCHITECTURE = (REPO / "docs" / "architecture.md").read_text()


def test_every_key_and_channel_is_in_the_architecture_doc() -> None:
    keys = Keys("P")
    names: list[str] = []
    for name, member in inspect.getmembers(Keys):
        if name.startswith("_") or name == "source_from_channel":
            continue
        if isinstance(member, property):
            names.append(getattr(keys, name))
        elif callable(member):
            ids = ("worker_status", "producer_health_check", "livekit_bridge", "worker_model")
            args = ["ID"] if name in ids else ["NAME"]
            args = {"delivery_status": ["ID"], "alert_snapshot": ["NAME", "ALERT"]}.get(name, args)
            names.append(member(keys, *args))
    assert len(names) > 15
    missing = [n for n in names if f"`{n}`" not in ARCHITECTURE]
    assert not missing, f"docs/architecture.md does not list {missing}"


def test_every_message_field_is_in_the_architecture_doc() -> None:
    for struct in (messages.TextChunk, messages.AudioChunk, messages.InstructionChanged,
                   messages.SourceNotice, messages.AlertEvent,
                   *typing.get_args(messages.CycleEvents)):  # fmt: skip
        tag = struct.__struct_config__.tag
        if issubclass(struct, messages.CycleEvent):
            assert f"| `cycle` `{tag}` | `{struct.__name__}` |" in ARCHITECTURE
        else:
            assert f"| `{tag}` | `{struct.__name__}` |" in ARCHITECTURE
        for field in msgspec.structs.fields(struct):
            assert f"`{field.name}`" in ARCHITECTURE, f"{struct.__name__}.{field.name}"


def test_every_stream_field_is_in_the_architecture_doc() -> None:
    sample_frame = FrameRecord(seq=0, ts=0.0, width=0, height=0, jpeg=b"x")
    sample_text = CommentaryRecord(cycle="c", status="finished", text="", instruction="")
    for field in [*sample_frame.to_fields(), *sample_text.to_fields()]:
        assert f"`{field}`" in ARCHITECTURE, field
