"""ENGINE=transformers for real: a tiny Llava built in the test, saved, loaded from MODEL_PATH.

The model has random weights and tiny sizes, the tokenizer is a byte-level BPE trained here,
the processor is transformers' own LlavaProcessor. The engine's normal load and generation
code runs on the CPU: the static-cache fast path and the generate() fallback must agree
token for token (greedy), and cancellation must stop a stream.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.settings import Settings
from worker.engines.base import EngineError, EngineRequest, WindowFrame

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CORPUS = [
    "a red car drives past the camera on a wet street",
    "two people walk a dog in the park near the river",
    "the scene is dark and nothing moves",
    "Describe what is happening in the video.",
] * 20


def _tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    specials = ["<unk>", "<s>", "</s>", "<pad>", "<image>", "<|user|>", "<|assistant|>"]
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(CORPUS, trainer)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=raw,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=["<image>", "<|user|>", "<|assistant|>"],
    )


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tf = transformers
    folder = tmp_path_factory.mktemp("tiny-llava")
    tokenizer = _tokenizer()
    image_size, patch = 28, 14
    processor = tf.LlavaProcessor(
        image_processor=tf.CLIPImageProcessor(
            size={"shortest_edge": image_size},
            crop_size={"height": image_size, "width": image_size},
        ),
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        num_additional_image_tokens=1,
    )
    text = tf.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = tf.CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch,
        projection_dim=32,
    )
    config = tf.LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(0)
    model = tf.LlavaForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _settings(path: Path, **changes: object) -> Settings:
    base = Settings(
        engine="transformers",
        model_path=str(path),
        decode_temperature=0.0,
        engine_device="cpu",
        decode_max_len=1024,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _request(frames: int = 2, max_new: int = 12) -> EngineRequest:
    rng = np.random.default_rng(1)
    window = [
        WindowFrame(seq=i, ts=float(i), image=rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
        for i in range(frames)
    ]
    return EngineRequest(
        source="cam",
        frames=window,
        instruction="Describe what is happening in the video.",
        context=("a red car",),
        max_new_tokens=max_new,
    )


def _run(settings: Settings, request: EngineRequest, fast: bool = True) -> tuple[str, int]:
    from worker.engines.transformers_engine import TransformersEngine

    engine = TransformersEngine(settings)
    info = engine.load()
    assert info.engine == "transformers" and info.dtype == "float32"
    if not fast:
        engine.decoder = None  # what a non-Llama decoder or an over-long request gets
    chunks = list(engine.stream(request, threading.Event()))
    engine.close()
    return "".join(c.text for c in chunks), sum(c.tokens for c in chunks)


def test_fast_path_matches_generate(tiny_model: Path) -> None:
    request = _request(max_new=64)
    fast_text, fast_tokens = _run(_settings(tiny_model), request)
    slow_text, slow_tokens = _run(_settings(tiny_model), request, fast=False)
    assert fast_tokens > 0
    assert (fast_text, fast_tokens) == (slow_text, slow_tokens)
    for special in ("<s>", "</s>", "<image>", "<|user|>", "<|assistant|>", "<pad>"):
        assert special not in fast_text  # no special tokens leak into commentary


def test_request_longer_than_static_cache_uses_generate(tiny_model: Path) -> None:
    from worker.engines.transformers_engine import TransformersEngine

    engine = TransformersEngine(_settings(tiny_model, decode_max_len=256))
    engine.load()
    assert engine.decoder is not None and not engine.decoder.fits(100, 200)
    chunks = list(engine.stream(_request(max_new=230), threading.Event()))
    assert 0 < sum(c.tokens for c in chunks) <= 230


def test_fast_decoder_is_used_and_reports(tiny_model: Path) -> None:
    from worker.engines.transformers_engine import TransformersEngine

    engine = TransformersEngine(_settings(tiny_model))
    info = engine.load()
    assert info.extra["decode"] == "eager"  # static cache on the CPU, no CUDA graph
    assert info.checkpoint == str(tiny_model) and info.load_seconds > 0


def test_cancel_stops_between_chunks(tiny_model: Path) -> None:
    from worker.engines.transformers_engine import TransformersEngine

    for max_len in (1024, 256):  # fast path, then generate()
        engine = TransformersEngine(_settings(tiny_model, decode_max_len=max_len))
        engine.load()
        cancel = threading.Event()
        stream = engine.stream(_request(max_new=200), cancel)
        received = []
        for chunk in stream:
            received.append(chunk)
            cancel.set()
        assert len(received) == 1


def test_missing_model_path_names_download(tmp_path: Path) -> None:
    from worker.engines.transformers_engine import TransformersEngine

    engine = TransformersEngine(_settings(tmp_path / "absent"))
    with pytest.raises(EngineError, match="does not exist"):
        engine.load()


def test_not_an_image_text_model(tmp_path: Path) -> None:
    from worker.engines.transformers_engine import TransformersEngine

    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(EngineError, match="cannot load"):
        TransformersEngine(_settings(tmp_path)).load()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_the_step_is_compiled_and_captured(tiny_model: Path) -> None:
    from worker.engines.transformers_engine import TransformersEngine

    engine = TransformersEngine(_settings(tiny_model, engine_device="cuda"))
    info = engine.load()
    assert info.extra["decode"] == "compiled+cuda-graph" and info.dtype == "bfloat16"
    assert int(info.extra["vram_allocated_mib"]) >= 0
    chunks = list(engine.stream(_request(max_new=32), threading.Event()))
    assert 0 < sum(c.tokens for c in chunks) <= 32
