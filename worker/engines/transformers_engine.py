"""ENGINE=transformers: any image-text-to-text checkpoint in MODEL_PATH, streamed as text.

For users without MiniCPM-o: `AutoModelForImageTextToText` + `AutoProcessor`, the
processor's own chat template, the window's frames as images. Decoding takes the static-cache
fast path (`fast_decode`) where the checkpoint's language model is Llama-shaped, and HF
`generate()` otherwise (or with COMPILE_DECODE=false).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any

from shared.settings import Settings
from worker.engines.base import (
    Chunk,
    Engine,
    EngineError,
    EngineInfo,
    EngineRequest,
    compose_prompt,
)
from worker.engines.fast_decode_stream import hf_generate_tokens, stop_token_ids, text_chunks
from worker.engines.minicpmo_preflight import GPU_PACKAGES, read_config, require_packages

log = logging.getLogger(__name__)


def frames_to_pil(frames: Any) -> list[Any]:
    """BGR uint8 frames (OpenCV order) to RGB PIL images, as processors expect."""
    from PIL import Image

    return [Image.fromarray(frame.image[:, :, ::-1].copy()) for frame in frames]


def vram_fields(torch_module: Any, device: Any) -> dict[str, str]:
    """VRAM allocated/reserved in MiB for the status key (empty off CUDA)."""
    if getattr(device, "type", "cpu") != "cuda":
        return {}
    mib = 1024 * 1024
    return {
        "vram_allocated_mib": str(torch_module.cuda.memory_allocated(device) // mib),
        "vram_reserved_mib": str(torch_module.cuda.memory_reserved(device) // mib),
    }


class TransformersEngine(Engine):
    """Streams text from an image-text-to-text model loaded from MODEL_PATH."""

    name = "transformers"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model: Any = None
        self.processor: Any = None
        self.decoder: Any = None
        self.device: Any = None
        self.dtype: Any = None
        self.stop_ids: frozenset[int] = frozenset()
        self._info = EngineInfo(engine=self.name, checkpoint=settings.model_path)

    def _pick_device(self, torch: Any) -> tuple[Any, Any]:
        wanted = self.settings.engine_device
        if wanted == "cuda" and not torch.cuda.is_available():
            raise EngineError("ENGINE_DEVICE=cuda but torch sees no CUDA device")
        use_cuda = wanted == "cuda" or (wanted == "auto" and torch.cuda.is_available())
        if use_cuda:
            return torch.device("cuda"), torch.bfloat16
        return torch.device("cpu"), torch.float32

    def load(self) -> EngineInfo:
        started = time.perf_counter()
        read_config(self.settings.model_path)
        require_packages(GPU_PACKAGES, "gpu")
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor  # type: ignore[attr-defined]

        from worker.engines.fast_decode import SamplingParams, build_fast_decoder

        self.device, self.dtype = self._pick_device(torch)
        path = self.settings.model_path
        try:
            self.processor = AutoProcessor.from_pretrained(path)
            model = AutoModelForImageTextToText.from_pretrained(path, torch_dtype=self.dtype)
        except (OSError, ValueError, KeyError) as exc:
            raise EngineError(
                f"cannot load an image-text-to-text model from {path}: {exc}"
            ) from exc
        self.model = model.to(self.device).eval()
        tokenizer = self.processor.tokenizer
        eos = self.model.generation_config.eos_token_id
        extra = [eos] if isinstance(eos, int) else list(eos or [])
        self.stop_ids = stop_token_ids(tokenizer, (), extra)
        on_cuda = self.device.type == "cuda"
        self.decoder = build_fast_decoder(
            self.model,
            self.settings.decode_max_len,
            use_graph=on_cuda,
            compile_step=on_cuda and self.settings.compile_decode,
            sampling=SamplingParams(temperature=self.settings.decode_temperature),
        )
        self._info = EngineInfo(
            engine=self.name,
            checkpoint=path,
            dtype=str(self.dtype).removeprefix("torch."),
            device=str(self.device),
            load_seconds=time.perf_counter() - started,
            extra={"decode": self.decoder.mode if self.decoder else "generate"},
        )
        return self.info()

    def info(self) -> EngineInfo:
        if self.model is not None:
            import torch

            self._info.extra.update(vram_fields(torch, self.device))
        return self._info

    def _inputs(self, request: EngineRequest) -> Any:
        content: list[dict[str, str]] = [{"type": "image"} for _ in request.frames]
        content.append({"type": "text", "text": compose_prompt(request)})
        messages = [{"role": "user", "content": content}]
        prompt = self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
        images = frames_to_pil(request.frames) or None
        inputs = self.processor(images=images, text=prompt, return_tensors="pt").to(self.device)
        inputs.pop("token_type_ids", None)  # some tokenizers add it; generate() refuses it
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        return inputs

    def _token_ids(
        self, inputs: Any, max_new: int, cancel: threading.Event
    ) -> Generator[int, None, None]:
        import torch

        from worker.engines.fast_decode import SamplingParams

        params = SamplingParams(temperature=self.settings.decode_temperature)
        length = int(inputs["input_ids"].shape[1])
        if self.decoder is not None and self.decoder.fits(length, max_new):
            with torch.inference_mode():
                out = self.model(**inputs, use_cache=True, return_dict=True)
                self.decoder.start(out.past_key_values, length)
                first = out.logits[:, -1]
            yield from self.decoder.tokens(first, length, max_new, params, self.stop_ids)
            return
        greedy = params.temperature <= 0
        kwargs: dict[str, Any] = dict(inputs)
        kwargs.update(
            max_new_tokens=max_new, do_sample=not greedy, eos_token_id=sorted(self.stop_ids)
        )
        if not greedy:
            kwargs.update(temperature=params.temperature, top_k=params.top_k, top_p=params.top_p)
        yield from hf_generate_tokens(self.model.generate, kwargs, cancel)

    def stream(self, request: EngineRequest, cancel: threading.Event) -> Iterator[Chunk]:
        if self.model is None:
            raise EngineError("engine not loaded: call load() first")
        inputs = self._inputs(request)
        ids = self._token_ids(inputs, request.max_new_tokens, cancel)
        yield from text_chunks(ids, self.processor.tokenizer, self.stop_ids, cancel)

    def close(self) -> None:
        self.model = self.decoder = None
