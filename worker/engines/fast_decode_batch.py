"""Batched decode over per-source static-cache slots: the device side of continuous batching.

At a few sequences decode is bound by reading the weights, so one step over eight sequences
costs little more than over one. Each source owns a slot of a static KV cache
[slots, kv_heads, max_len, head_dim] per layer. `admit` prefills a prompt through the single
decoder's bucketed prefill (its CUDA graphs) and copies the prompt's keys and values into the
slot; `launch(n)` runs one step over slots 0..n-1: every active slot feeds its last token,
gets its next one sampled on the device and advances; idle slots inside n compute for nothing
and stay at position 0. One CUDA graph per batch size (1, 2, 4, 8, ... up to the slots); the
scheduler (`fast_decode_batch_loop`) keeps busy slots low so the smallest graph serves.

Attention reads only each slot's filled length (`decode_attention`) on CUDA, so neither the
slot count nor DECODE_MAX_LEN costs a token anything beyond the cache's memory.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from worker.engines.decode_attention import decode_attention, length_aware_available
from worker.engines.fast_decode import FastDecoder, _rotate_half
from worker.engines.fast_decode_params import SamplingParams
from worker.engines.fast_decode_sampled import sample_on_device

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


class BatchDecoder:
    """Static-cache slots over the single decoder's weights (no copy of them)."""

    @torch.inference_mode()  # no autograd: compile and capture trace the inference step
    def __init__(
        self,
        single: FastDecoder,
        slots: int,
        max_len: int,
        sampling: SamplingParams,
        use_graph: bool,
        compile_step: bool = False,
        length_aware: bool | None = None,
    ) -> None:
        if single.prefiller is None:
            raise ValueError("the batch decoder prefills through the single decoder's buckets")
        self.single, self.parts, self.layers = single, single.parts, single.layers
        self.heads, self.kv_heads, self.head_dim = single.heads, single.kv_heads, single.head_dim
        self.device, self.dtype = single.device, single.dtype
        self.slots, self.max_len, self.params = slots, max_len, sampling
        self.length_aware = (
            length_aware_available(self.device) if length_aware is None else length_aware
        )
        shape = (slots, self.kv_heads, max_len, self.head_dim)
        self.k_cache = [self._zeros(shape) for _ in self.layers]
        self.v_cache = [self._zeros(shape) for _ in self.layers]
        self.tok = torch.zeros((slots, 1), dtype=torch.long, device=self.device)
        self.pos = torch.zeros((slots,), dtype=torch.long, device=self.device)
        self.active = torch.zeros((slots,), dtype=torch.long, device=self.device)
        self.rows = torch.arange(slots, device=self.device)
        vocab = int(self.parts.config.vocab_size)
        self.logits = torch.zeros((slots, vocab), dtype=torch.float32, device=self.device)
        weight = self.parts.base.embed_tokens.weight
        positions = torch.arange(max_len, device=self.device).view(1, -1)
        cos, sin = self.parts.base.rotary_emb(weight[:1].view(1, 1, -1), positions)
        self.cos, self.sin = cos[0].to(self.dtype), sin[0].to(self.dtype)
        self.sizes = [b for b in BATCH_SIZES if b < slots] + [slots]
        self._step_fn: Any = self._step
        if compile_step:
            self._step_fn = torch.compile(self._step, fullgraph=True)
        self.compiled = compile_step
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.capture_seconds = 0.0
        if use_graph and self.device.type == "cuda":
            self._capture_all()

    def _zeros(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.zeros(shape, device=self.device, dtype=self.dtype)

    @property
    def mode(self) -> str:
        """How a step runs, for the engine's info."""
        how = "eager"
        if self.graphs:
            how = "compiled+cuda-graph" if self.compiled else "cuda-graph"
        attention = "length-aware" if self.length_aware else "masked"
        return f"{how}, {self.slots} slots, {attention} attention"

    def bytes_per_slot(self) -> int:
        """Device memory one slot's caches take (keys and values of every layer)."""
        per_layer = self.kv_heads * self.max_len * self.head_dim * self.k_cache[0].element_size()
        return 2 * per_layer * len(self.layers)

    def size_for(self, highest_slot: int) -> int:
        """The batch size (a captured graph) that covers slots 0..highest_slot."""
        return next(b for b in self.sizes if b > highest_slot)

    def _step(self, n: int) -> None:
        """One token for slots 0..n-1 at their `pos`: reads `tok`, writes `logits`."""
        base = self.parts.base
        pos = self.pos[:n]
        x = base.embed_tokens(self.tok[:n])  # [n, 1, hidden]
        cos = self.cos.index_select(0, pos).view(n, 1, 1, -1)
        sin = self.sin.index_select(0, pos).view(n, 1, 1, -1)
        rows, lengths = self.rows[:n], pos + 1
        for index, layer in enumerate(self.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = attn.q_proj(h).view(n, 1, self.heads, self.head_dim)
            k = attn.k_proj(h).view(n, 1, self.kv_heads, self.head_dim)
            v = attn.v_proj(h).view(n, 1, self.kv_heads, self.head_dim)
            if hasattr(attn, "q_norm"):  # Qwen3 normalises q and k per head
                q, k = attn.q_norm(q), attn.k_norm(k)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            kc, vc = self.k_cache[index], self.v_cache[index]
            kc[rows, :, pos] = k[:, :, 0]
            vc[rows, :, pos] = v[:, :, 0]
            o = decode_attention(q[:, :, 0], kc, vc, lengths, self.length_aware)
            x = x + attn.o_proj(o.reshape(n, 1, self.heads * self.head_dim))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        self.logits[:n].copy_(self.parts.lm_head(base.norm(x))[:, -1].float())

    def _sampled(self, n: int) -> None:
        """The step, then each slot's next token sampled into `tok`; active slots advance."""
        self._step_fn(n)
        self.tok[:n].copy_(sample_on_device(self.logits[:n], self.params))
        self.pos[:n].add_(self.active[:n]).clamp_(max=self.max_len - 1)

    def _capture_all(self) -> None:
        started = time.perf_counter()
        pool = torch.cuda.graph_pool_handle()  # sizes never run at once: one memory pool
        for n in self.sizes:
            stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):  # warm-up: compile, cuBLAS handles, autotuning
                    self._sampled(n)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self._sampled(n)
            self.graphs[n] = graph
        torch.cuda.synchronize()
        self.pos.zero_()
        self.capture_seconds = time.perf_counter() - started

    @torch.inference_mode()
    def launch(self, n: int) -> None:
        """Queue one sampled step over slots 0..n-1 (n one of `sizes`)."""
        graph = self.graphs.get(n)
        if graph is not None:
            graph.replay()
        else:
            self._sampled(n)

    @torch.inference_mode()
    def admit(self, slot: int, embeds: torch.Tensor) -> torch.Tensor:
        """Prefill embeddings [1, L, hidden] into `slot`; returns its first token id ([1, 1],
        on the device, also written to the slot's `tok`). The slot is active from now on."""
        length = int(embeds.shape[1])
        if length >= self.max_len:
            raise ValueError(f"a prompt of {length} tokens does not fit {self.max_len} slots")
        logits = self.single.prefiller.prefill(embeds)
        for index in range(len(self.layers)):
            self.k_cache[index][slot, :, :length].copy_(self.single.k_cache[index][0, :, :length])
            self.v_cache[index][slot, :, :length].copy_(self.single.v_cache[index][0, :, :length])
        first = sample_on_device(logits, self.params)
        self.tok[slot].copy_(first.view(1))
        self.pos[slot].fill_(length)
        self.active[slot].fill_(1)
        return first

    @torch.inference_mode()
    def release(self, slot: int) -> None:
        """The slot is free: it stays at position 0 and costs attention nothing."""
        self.active[slot].fill_(0)
        self.pos[slot].fill_(0)

    @torch.inference_mode()
    def forced_logits(self, n: int, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: feed `tokens` [n] at `positions` [n] to slots 0..n-1 (no sampling,
        no graph); returns a copy of their logits [n, vocab]."""
        self.tok[:n].copy_(tokens.view(n, 1))
        self.pos[:n].copy_(positions)
        self._step_fn(n)
        return self.logits[:n].clone()
