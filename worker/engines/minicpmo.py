"""ENGINE=minicpmo: MiniCPM-o 4.5 (BF16 or AWQ) from MODEL_PATH, streaming text and speech.

Load: preflight (folder, packages, CUDA and free VRAM for this checkpoint; or, with
ENGINE_DEVICE=cpu, a checkpoint small enough for the CPU), then
`AutoModel.from_pretrained(trust_remote_code=True)` in float16 for AWQ checkpoints and
bfloat16 otherwise, vision only unless ENABLE_TTS (then the TTS and the reference voice, once).
Text windows go through `minicpmo_text` (the model's embeddings, static-cache fast decode);
spoken windows through the model's streaming API (`minicpmo_speech`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from shared.settings import Settings
from worker.engines.base import (
    Chunk,
    Engine,
    EngineError,
    EngineInfo,
    EngineRequest,
    compose_prompt,
)
from worker.engines.fast_decode_stream import stop_token_ids, text_chunks
from worker.engines.minicpmo_preflight import (
    GPU_PACKAGES,
    TTS_PACKAGES,
    choose_dtype,
    quant_method,
    read_config,
    require_cpu_size,
    require_cuda,
    require_packages,
    require_vocoder,
    require_vram,
    vram_needed,
)
from worker.engines.transformers_engine import frames_to_pil, vram_fields

if TYPE_CHECKING:
    from worker.engines.batch_session import BatchSession

log = logging.getLogger(__name__)


class MiniCPMoEngine(Engine):
    """MiniCPM-o 4.5 behind the Engine interface."""

    name = "minicpmo"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model: Any = None
        self.processor: Any = None
        self.decoder: Any = None
        self.device: Any = None
        self.stop_ids: frozenset[int] = frozenset()
        self.speech = False
        self.vision_attention = "eager"
        self.batched: Any = None  # a BatchedWriter where MAX_BATCH > 1 (text only)
        self._info = EngineInfo(engine=self.name, checkpoint=settings.model_path)

    def preflight(self) -> tuple[dict[str, Any], str]:
        """Every check that needs no weights loaded; returns the config and the device."""
        s = self.settings
        config = read_config(s.model_path)
        require_packages(GPU_PACKAGES, "gpu")
        if quant_method(config) == "awq":
            require_packages(("awq",), "gpu")  # AutoAWQ's kernels, which transformers calls
        if s.enable_tts:
            require_vocoder(s.model_path)
            require_packages(TTS_PACKAGES, "gpu")
        import torch

        if s.engine_device == "cpu":
            if quant_method(config):
                raise EngineError(
                    "quantised checkpoints need CUDA: ENGINE_DEVICE=cpu cannot run them"
                )
            require_cpu_size(s.model_path, s.cpu_model_max_gib, s.enable_tts)
            return config, "cpu"
        require_cuda(torch)
        free, total = torch.cuda.mem_get_info()
        needed = vram_needed(s.model_path, s.enable_tts)
        require_vram(needed, free, total, torch.cuda.get_device_name(), s.model_path)
        return config, "cuda"

    def load(self) -> EngineInfo:
        started = time.perf_counter()
        config, device_name = self.preflight()
        import torch

        s = self.settings
        dtype = getattr(torch, choose_dtype(s.model_dtype, config, device_name))
        model, processor = self._from_pretrained(dtype, device_name)
        reference = ""
        if s.enable_tts:
            from worker.engines.minicpmo_speech import init_speech

            reference = str(init_speech(model, s.model_path, s.ref_audio_path, s.tts_float16))
        device = torch.device(device_name)
        self.attach(model, processor, device)
        on_cuda = device.type == "cuda"
        self._info = EngineInfo(
            engine=self.name,
            checkpoint=s.model_path,
            dtype=str(dtype).removeprefix("torch."),
            device=f"cuda ({torch.cuda.get_device_name()})" if on_cuda else "cpu",
            load_seconds=time.perf_counter() - started,
            extra={
                "quantization": quant_method(config) or "none",
                "decode": self.decoder.mode if self.decoder else "generate",
                "batch": self.batched.decoder.mode if self.batched else "off",
                "prefill": self._prefill_mode(),
                "vision_attention": self.vision_attention,
                "tts": "on" if s.enable_tts else "off",
                "ref_audio": reference,
            },
        )
        return self.info()

    def _from_pretrained(self, dtype: Any, device: str) -> tuple[Any, Any]:
        """The model (eval mode, on `device`) and its processor, from the checkpoint's code."""
        from transformers import AutoModel, AutoProcessor  # type: ignore[attr-defined]

        from worker.engines.remote_code import relaxed_import_check

        s = self.settings
        try:
            with relaxed_import_check():
                model = AutoModel.from_pretrained(
                    s.model_path,
                    trust_remote_code=True,
                    attn_implementation="sdpa",
                    torch_dtype=dtype,
                    device_map=device,  # straight onto the device; quantised models refuse .to()
                    init_vision=True,
                    init_audio=s.enable_tts,
                    init_tts=s.enable_tts,
                )
                processor = AutoProcessor.from_pretrained(s.model_path, trust_remote_code=True)
        except (OSError, ValueError, ImportError, RuntimeError) as exc:  # OOM is a RuntimeError
            raise EngineError(
                f"cannot load MiniCPM-o from {s.model_path}: {exc}. "
                f"`lookout models check {s.model_path}` lists known checkpoint defects."
            ) from exc
        return model.eval(), processor

    def attach(self, model: Any, processor: Any, device: Any) -> None:
        """Take a loaded model (or a stand-in in tests) and build the fast decoder for it."""
        from worker.engines.fast_decode import SamplingParams, build_fast_decoder
        from worker.engines.fast_decode_prefill import DEFAULT_BUCKETS

        model.processor = processor  # the model's streaming API reuses it instead of reloading
        self.model, self.processor, self.device = model, processor, device
        self.speech = self.settings.enable_tts
        from worker.engines.minicpmo_text import TERMINATORS

        self.stop_ids = stop_token_ids(processor.tokenizer, TERMINATORS)
        if hasattr(model, "vpm"):
            from worker.engines.minicpmo_vision import use_sdpa

            self.vision_attention = f"sdpa ({use_sdpa(model.vpm)} layers)"
        on_cuda = getattr(device, "type", "cpu") == "cuda"
        self.decoder = build_fast_decoder(
            model,
            self.settings.decode_max_len,
            use_graph=on_cuda,
            compile_step=on_cuda and self.settings.compile_decode,
            prefill_buckets=DEFAULT_BUCKETS,
            sampling=SamplingParams(temperature=self.settings.decode_temperature),
        )
        self.batched = self._batched_writer(on_cuda)

    def _batched_writer(self, on_cuda: bool) -> Any:
        """Slots for MAX_BATCH sources decoded together; None where batching cannot apply
        (MAX_BATCH 1, speech, or no bucketed prefill to fill the slots from)."""
        s = self.settings
        if s.max_batch <= 1 or s.enable_tts or self.decoder is None:
            return None
        if self.decoder.prefiller is None:
            return None
        from worker.engines.fast_decode import SamplingParams
        from worker.engines.fast_decode_batch import BatchDecoder
        from worker.engines.minicpmo_batch import BatchedWriter

        slots = BatchDecoder(
            self.decoder,
            slots=s.max_batch,
            max_len=s.decode_max_len,
            sampling=SamplingParams(temperature=s.decode_temperature),
            use_graph=on_cuda,
            compile_step=on_cuda and s.compile_decode,
        )
        return BatchedWriter(self, slots)

    def batch_capacity(self) -> int:
        return int(self.batched.decoder.slots) if self.batched is not None else 1

    def open_batch(self) -> BatchSession:
        """The slots' session where batching applies (never with speech: `batched` is None
        then), else requests one after another."""
        if self.model is None:
            raise EngineError("engine not loaded: call load() first")
        if self.batched is None:
            return super().open_batch()
        session: BatchSession = self.batched.session()
        return session

    def _prefill_mode(self) -> str:
        prefiller = self.decoder.prefiller if self.decoder else None
        if prefiller is None:
            return "hf"
        return "cuda-graph buckets" if prefiller.graphs else "bucketed eager"

    def info(self) -> EngineInfo:
        if self.model is not None and getattr(self.device, "type", "cpu") == "cuda":
            import torch

            self._info.extra.update(vram_fields(torch, self.device))
        return self._info

    def stream(self, request: EngineRequest, cancel: threading.Event) -> Iterator[Chunk]:
        if self.model is None:
            raise EngineError("engine not loaded: call load() first")
        prompt = compose_prompt(request)
        if request.speak and self.speech:
            yield from self._speak(prompt, request, cancel)
        else:
            yield from self._write(prompt, request, cancel)

    def _speak(
        self, prompt: str, request: EngineRequest, cancel: threading.Event
    ) -> Iterator[Chunk]:
        from worker.engines.minicpmo_speech import speech_chunks

        s = self.settings
        limit = min(request.max_new_tokens, s.tts_max_new_tokens)
        images = frames_to_pil(request.frames)
        yield from speech_chunks(
            self.model, images, prompt, limit, s.decode_temperature, s.tts_pause_after, cancel
        )

    def _inputs(self, prompt_text: str, request: EngineRequest) -> Any:
        """Model inputs: pixels made on the device where it can, else by the processor."""
        from worker.engines import minicpmo_text as text
        from worker.engines.minicpmo_inputs import device_inputs

        inputs = device_inputs(self.processor, prompt_text, list(request.frames), self.device)
        if inputs is None:
            images = frames_to_pil(request.frames)
            inputs = text.processor_inputs(self.processor, prompt_text, images, self.device)
        return inputs

    def _write(
        self, prompt: str, request: EngineRequest, cancel: threading.Event
    ) -> Iterator[Chunk]:
        from worker.engines import minicpmo_text as text
        from worker.engines.fast_decode import SamplingParams

        tokenizer = self.processor.tokenizer
        prompt_text = text.build_prompt_text(tokenizer, len(request.frames), prompt)
        inputs = self._inputs(prompt_text, request)
        embeds = text.embed(self.model, inputs)
        params = SamplingParams(temperature=self.settings.decode_temperature)
        ids = text.token_ids(
            self.model, embeds, self.decoder, request.max_new_tokens, params, self.stop_ids, cancel
        )
        yield from text_chunks(ids, tokenizer, self.stop_ids, cancel)

    def close(self) -> None:
        self.model = self.decoder = self.processor = self.batched = None
