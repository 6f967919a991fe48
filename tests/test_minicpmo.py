"""The minicpmo engine's speech path against a stand-in of MiniCPM-o: what the real code
cannot run here. The model's own `streaming_generate` needs the token2wav vocoder, whose
weight files (flow, HiFT, speaker and speech-tokenizer models) are not part of the remote
code and cannot be downloaded here (docs/models.md, "Speech"). Everything else of the engine
runs on the model's own code in tests/test_minicpmo_real.py.

`StandInMiniCPMo` implements the calls the speech path makes (`streaming_prefill`,
`streaming_generate`, yielding the vocoder's real output format: 24 kHz float waveforms with
their text); its `llm` is a tiny Qwen3 so the engine can attach. The tokenizer and processor
stand-ins are byte-level and record calls.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from shared.settings import Settings
from worker.engines.audio import silence
from worker.engines.base import EngineRequest, WindowFrame
from worker.engines.fast_decode_stream import TextAssembler, strip_special

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SPECIALS = {"<|im_end|>": 256, "<|endoftext|>": 257, "<|tts_eos|>": 258, "<unk>": 259}


class StandInTokenizer:
    """Stand-in for MiniCPM-o's tokenizer: one id per byte, four special tokens."""

    unk_token_id = SPECIALS["<unk>"]
    eos_token_id = SPECIALS["<|endoftext|>"]

    def __init__(self) -> None:
        self.templated: list[tuple[list[dict[str, Any]], dict[str, Any]]] = []

    def convert_tokens_to_ids(self, token: str) -> int:
        return SPECIALS.get(token, self.unk_token_id)

    def encode(self, text: str) -> list[int]:
        return list(text.encode())

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        names = {v: k for k, v in SPECIALS.items()}
        out, raw = [], bytearray()
        for i in ids:
            if i < 256:
                raw.append(i)
                continue
            out.append(raw.decode("utf-8", errors="replace"))
            raw = bytearray()
            out.append("" if skip_special_tokens else names[i])
        out.append(raw.decode("utf-8", errors="replace"))
        return "".join(out)

    def apply_chat_template(self, messages: list[dict[str, Any]], **kwargs: Any) -> str:
        self.templated.append((messages, kwargs))
        return f"<|im_start|>user\n{messages[0]['content']}<|im_end|>\n<|im_start|>assistant\n"


class StandInInputs(dict[str, Any]):
    def to(self, device: Any) -> StandInInputs:
        return self


class StandInProcessor:
    """Stand-in for MiniCPMOProcessor: records the images and turns text into byte ids."""

    def __init__(self) -> None:
        self.tokenizer = StandInTokenizer()
        self.calls: list[tuple[list[Any], dict[str, Any]]] = []

    def __call__(self, texts: list[str], images: list[list[Any]], *rest: Any, **kwargs: Any) -> Any:
        self.calls.append((images[0], kwargs))
        ids = torch.tensor([list(texts[0].encode()[:200])], dtype=torch.long)
        return StandInInputs(input_ids=ids, image_sizes=[[]])


class StandInMiniCPMo(torch.nn.Module):  # type: ignore[misc,name-defined]
    """Stand-in for MiniCPM-o 4.5: a tiny real Qwen3 `llm` plus the streaming API."""

    def __init__(self, speech: list[tuple[Any, str]] | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        config = transformers.Qwen3Config(
            vocab_size=260,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            max_position_embeddings=2048,
        )
        self.llm = transformers.Qwen3ForCausalLM(config).eval()
        self.speech = speech or []
        self.prefills: list[dict[str, Any]] = []
        self.generates: list[dict[str, Any]] = []
        self.closed = False

    def get_vllm_embedding(self, data: dict[str, Any]) -> tuple[Any, list[Any]]:
        return self.llm.model.embed_tokens(data["input_ids"]), []

    def streaming_prefill(self, **kwargs: Any) -> str:
        self.prefills.append(kwargs)
        return ""

    def streaming_generate(self, **kwargs: Any) -> Iterator[tuple[Any, str]]:
        self.generates.append(kwargs)
        try:
            yield from self.speech
        finally:
            self.closed = True


def frame(bgr: tuple[int, int, int], seq: int = 0) -> WindowFrame:
    image = np.zeros((24, 32, 3), dtype=np.uint8)
    image[:, :] = bgr
    return WindowFrame(seq=seq, ts=float(seq), image=image)


def engine_with(model: StandInMiniCPMo, **changes: Any) -> Any:
    from worker.engines.minicpmo import MiniCPMoEngine

    base = Settings(engine="minicpmo", decode_temperature=0.0, decode_max_len=1024)
    engine = MiniCPMoEngine(dataclasses.replace(base, **changes))
    engine.attach(model, StandInProcessor(), torch.device("cpu"))
    return engine


def request(frames: int = 3, max_new: int = 24, speak: bool = False) -> EngineRequest:
    return EngineRequest(
        source="cam",
        frames=[frame((0, 0, 255), i) for i in range(frames)],
        instruction="What is happening?",
        context=("A car passed.",),
        max_new_tokens=max_new,
        speak=speak,
    )


def test_special_tokens_never_reach_viewers() -> None:
    assert strip_special("Hello<|im_end|>") == "Hello"
    assert strip_special("<think>\n\n</think>\n\nA dog runs.<|tts_eos|>") == "\n\nA dog runs."
    assembler = TextAssembler(StandInTokenizer())
    pieces = [assembler.add(i) for i in [*b"  Hello world.", SPECIALS["<|im_end|>"]]]
    text = "".join(p[0] for p in pieces if p) + ((assembler.flush() or ("", 0))[0])
    assert text == "Hello world."


def speech_audio(seconds: float) -> Any:
    t = torch.arange(int(24_000 * seconds)) / 24_000
    return 0.3 * torch.sin(2 * torch.pi * 300 * t)


def test_speech_chunks_pcm_aligned_with_text_then_pause() -> None:
    model = StandInMiniCPMo(
        speech=[(speech_audio(0.5), " Hello "), (speech_audio(0.25), "world.<|tts_eos|>")]
    )
    engine = engine_with(model, enable_tts=True, tts_max_new_tokens=50, tts_pause_after=0.5)
    chunks = list(engine.stream(request(frames=2, max_new=300, speak=True), threading.Event()))
    assert [c.text for c in chunks] == ["Hello ", "world.", ""]
    assert [len(c.pcm or b"") for c in chunks] == [48_000, 24_000, len(silence(0.5))]
    assert chunks[-1].pcm == silence(0.5)
    content = model.prefills[0]["msgs"][0]["content"]
    assert len(content) == 3 and content[-1].endswith("What is happening?")
    assert model.prefills[0]["is_last_chunk"] is True
    asked = model.generates[0]
    assert asked["generate_audio"] and asked["use_tts_template"]
    assert asked["max_new_tokens"] == 50  # TTS_MAX_NEW_TOKENS caps a spoken answer
    assert asked["session_id"] == model.prefills[0]["session_id"]


def test_cancel_mid_speech_stops_generation() -> None:
    model = StandInMiniCPMo(speech=[(speech_audio(0.1), f"w{i} ") for i in range(10)])
    engine = engine_with(model, enable_tts=True)
    cancel = threading.Event()
    received = []
    for chunk in engine.stream(request(speak=True), cancel):
        received.append(chunk)
        cancel.set()
    assert len(received) == 1 and model.closed  # no pause chunk, the model's stream closed


def test_speak_request_without_tts_falls_back_to_text() -> None:
    model = StandInMiniCPMo(speech=[(speech_audio(0.1), "never")])
    engine = engine_with(model, enable_tts=False)
    chunks = list(engine.stream(request(speak=True), threading.Event()))
    assert not model.prefills and all(c.pcm is None for c in chunks)
