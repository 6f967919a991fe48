"""The bus contract: settings validation, message codecs, stream records, key names."""

from __future__ import annotations

import msgpack
import pytest
import redis.asyncio as aioredis

from shared.keys import Keys, SourceNameError, validate_source_name
from shared.messages import (
    SCHEMA_VERSION,
    AudioChunk,
    CycleFailed,
    CycleFinished,
    CycleFirstChunk,
    CycleInterrupted,
    CycleSkipped,
    CycleStarted,
    InstructionChanged,
    MessageError,
    SourceNotice,
    TextChunk,
    decode_message,
    decode_or_log,
    encode_message,
)
from shared.record_fields import RecordError
from shared.records import CommentaryRecord, FrameRecord
from shared.settings import SettingsError
from shared.settings_env import load_settings, read_env_file
from shared.status_records import WorkerBeat


@pytest.mark.parametrize(
    "message",
    [
        TextChunk(source="cam", cycle="c1", seq=3, text="A red ball moves left."),
        AudioChunk(source="cam", cycle="c1", seq=0, pcm=b"\x01\x00" * 480),
        CycleStarted(source="cam", cycle="c1", frame_seqs=[1, 3], frame_ts=[1.0, 2.0]),
        CycleFirstChunk(source="cam", cycle="c1", latency_ms=12.5),
        CycleFinished(source="cam", cycle="c1", text="A ball.", tokens=2, history_id="1-0"),
        CycleInterrupted(source="cam", cycle="c1", text="A", history_id="2-0", kind="answer"),
        CycleSkipped(source="cam", cycle="c1", reason="scene changed 0.4 < 5.0"),
        CycleFailed(source="cam", cycle="c1", error="out of memory"),
        InstructionChanged(source="cam", instruction="count people", rev=2),
        SourceNotice(source="cam", what="registered", detail="clip.mp4"),
    ],
)
def test_messages_round_trip_as_versioned_msgpack_maps(message: object) -> None:
    data = encode_message(message)  # type: ignore[arg-type]
    as_map = msgpack.unpackb(data)
    assert as_map["v"] == SCHEMA_VERSION and as_map["source"] == "cam"
    assert decode_message(data) == message


CYCLE = {"type": "cycle", "v": 1, "source": "cam", "cycle": "c1"}


def test_cycle_events_are_type_cycle_with_the_step_in_event() -> None:
    event = CycleFinished(source="cam", cycle="c1", text="A ball.", history_id="1-0")
    as_map = msgpack.unpackb(encode_message(event))
    assert (as_map["type"], as_map["event"], as_map["text"]) == ("cycle", "finished", "A ball.")
    assert "reason" not in as_map and event.event == "finished"
    # A map with every optional field of the one-struct format still reads (nulls ignored).
    old = {**CYCLE, "event": "skipped", "reason": "same scene", "text": None, "frame_seqs": []}
    skipped = decode_message(msgpack.packb(old))
    assert isinstance(skipped, CycleSkipped) and skipped.reason == "same scene"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xc1garbage", "not a msgpack map"),
        (msgpack.packb([1, 2]), "not a msgpack map"),
        (msgpack.packb({"type": "text", "v": 99, "source": "cam"}), "schema version 99"),
        (msgpack.packb({"type": "text", "source": "cam"}), "schema version None"),
        (msgpack.packb({"type": "nope", "v": 1, "source": "cam"}), "invalid 'nope'"),
        (msgpack.packb({"type": "text", "v": 1, "source": "cam", "seq": "x"}), "invalid 'text'"),
        (msgpack.packb({**CYCLE, "event": "nope"}), "invalid 'cycle'"),
        (msgpack.packb({**CYCLE, "event": "skipped"}), "invalid 'cycle'.*reason"),
    ],
)
def test_malformed_messages_are_rejected_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(MessageError, match=reason):
        decode_message(payload)
    assert decode_or_log(payload, "test") is None


def test_settings_defaults_match_the_issue() -> None:
    s = load_settings({}, env_file=None)
    assert (s.server_host, s.server_port, s.capture_fps, s.display_fps) == (
        "127.0.0.1",
        8199,
        2.0,
        10.0,
    )
    assert (s.frames_per_inference, s.frame_stride, s.change_threshold) == (4, 2, 5.0)
    assert (s.inference_interval, s.max_new_tokens, s.engine, s.stream_delay_init) == (
        1.0,
        512,
        "cpu",
        5.0,
    )
    assert s.enable_tts is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FRAMES_PER_INFERENCE": "9"}, "FRAMES_PER_INFERENCE=9: allowed range is 1 to 8"),
        ({"FRAME_STRIDE": "0"}, "FRAME_STRIDE=0: allowed range is 1 to 4"),
        ({"CHANGE_THRESHOLD": "51"}, "CHANGE_THRESHOLD=51.0: allowed range is 0 to 50"),
        ({"CAPTURE_FPS": "fast"}, "CAPTURE_FPS='fast': expected a float"),
        ({"ENGINE": "gpt"}, "ENGINE='gpt': expected one of cpu, minicpmo, transformers"),
        ({"ENABLE_TTS": "maybe"}, "ENABLE_TTS='maybe': expected true or false"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
    ],
)
def test_bad_settings_name_the_variable_and_range(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        load_settings(env, env_file=None)


def test_env_file_is_read_and_environment_wins(tmp_path: object) -> None:
    from pathlib import Path

    env_file = Path(str(tmp_path)) / ".env"
    env_file.write_text(
        "# comment\nSERVER_PORT=9000\nexport ENGINE='cpu'\nCAPTURE_FPS=3 # inline\n"
    )
    assert read_env_file(env_file)["CAPTURE_FPS"] == "3"
    s = load_settings({"SERVER_PORT": "9100"}, env_file=env_file)
    assert s.server_port == 9100 and s.capture_fps == 3.0


def test_records_round_trip_and_reject_bad_fields() -> None:
    frame = FrameRecord(
        seq=7, ts=1700000000.25, width=640, height=360, jpeg=b"\xff\xd8\xff..\xff\xd9"
    )
    wire = {
        k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in frame.to_fields().items()
    }
    assert FrameRecord.from_fields(wire) == frame
    with pytest.raises(RecordError, match="'seq'"):
        FrameRecord.from_fields({**wire, b"seq": b"seven"})
    record = CommentaryRecord(
        cycle="c1", status="finished", text="Ein Ball — rot.", instruction="x", frame_seqs=[1, 2]
    )
    wire2 = {k.encode(): v.encode() for k, v in record.to_fields().items()}
    assert CommentaryRecord.from_fields(wire2) == record
    with pytest.raises(RecordError, match="missing field 'text'"):
        CommentaryRecord.from_fields({b"cycle": b"c", b"status": b"finished"})


def test_worker_beat_keeps_engine_fields_flat_and_reads_them_back_as_extra() -> None:
    beat = WorkerBeat(
        worker="w1",
        engine="minicpmo",
        pid=12,
        sources=["a", "b"],
        beat_ts=1700000000.5,
        extra={"decode": "fast", "vram_peak_gib": 19.5, "tts": "off"},
    )
    wire = {k.encode(): v.encode() for k, v in beat.to_fields().items()}
    assert wire[b"decode"] == b"fast" and wire[b"sources"] == b"a,b"
    assert wire[b"vram_peak_gib"] == b"19.5"
    back = WorkerBeat.from_fields(wire)
    assert back == beat and back.tts is False and WorkerBeat().tts is None
    # Engine fields that hold numbers come back as numbers; 'nan' or '1e5' stay text.
    odd = WorkerBeat.from_fields({**wire, b"vram_mib": b"1234", b"x": b"nan", b"y": b"1e5"})
    assert (odd.extra["vram_mib"], odd.extra["x"], odd.extra["y"]) == (1234, "nan", "1e5")
    with pytest.raises(RecordError, match="'pid'"):
        WorkerBeat.from_fields({**wire, b"pid": b"many"})


def test_key_names_share_the_prefix_and_source_names_are_validated() -> None:
    keys = Keys("lk")
    assert keys.frames("cam-1") == "lk:src:{cam-1}:frames"
    assert keys.source_from_channel(keys.text_channel("cam-1")) == "cam-1"
    assert validate_source_name("Cam_2") == "Cam_2"
    for bad in ["", "-x", "a b", "a:b", "x" * 64, "../etc"]:
        with pytest.raises(SourceNameError):
            validate_source_name(bad)


async def test_maxlen_bounds_the_frames_stream(redis_client: aioredis.Redis, keys: Keys) -> None:
    stream = keys.frames("cam")
    record = FrameRecord(seq=0, ts=0.0, width=1, height=1, jpeg=b"\xff\xd8\xff\xff\xd9")
    for seq in range(2000):
        await redis_client.xadd(
            stream, {**record.to_fields(), "seq": str(seq)}, maxlen=100, approximate=True
        )
    length = await redis_client.xlen(stream)
    assert 100 <= length < 300  # approximate trimming removes whole nodes, never below MAXLEN
