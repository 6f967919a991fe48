"""What ENGINE=openai adds on top of the server: first chunk and tokens/s, engine vs raw HTTP.

    .venv/bin/python bench/openai_engine.py [--runs 15] [--tokens 64]

Starts the tests' real server (`transformers serve` on a tiny random-weight VLM, built into
.cache/openai-test-hub; `./bootstrap.sh test` installs it), then alternates the same request
(2 frames of 160x90, `max_tokens` tokens, which the model always runs to) through
OpenAIEngine.stream and through a bare httpx stream of the same body: the baseline. Prints
medians of the time to the first text and of text pieces per second, and their ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.jpeg import encode_jpeg  # noqa: E402
from shared.settings_env import load_settings  # noqa: E402
from tests.openai_server import MODEL_A, ServeProcess, build_checkpoints  # noqa: E402
from worker.engines.base import EngineRequest, WindowFrame  # noqa: E402
from worker.engines.openai_engine import OpenAIEngine  # noqa: E402
from worker.engines.openai_request import chat_body  # noqa: E402
from worker.engines.openai_sse import deltas  # noqa: E402


def request(tokens: int) -> EngineRequest:
    frames = []
    for n in range(2):
        image = np.full((90, 160, 3), 60 * n, np.uint8)
        frames.append(WindowFrame(n, time.time(), image, encode_jpeg(image, 80)))
    return EngineRequest(
        source="cam", frames=frames, instruction="Describe.", max_new_tokens=tokens
    )


def through_engine(engine: OpenAIEngine, tokens: int) -> tuple[float, float]:
    started = time.perf_counter()
    first, pieces = 0.0, 0
    for chunk in engine.stream(request(tokens), threading.Event()):
        first = first or time.perf_counter() - started
        pieces += chunk.tokens
    return first, pieces / (time.perf_counter() - started - first)


async def raw(base_url: str, tokens: int) -> tuple[float, float]:
    body = {**chat_body(request(tokens), MODEL_A, 0.7, 0), "stream": True}
    async with httpx.AsyncClient(timeout=60) as client:
        started = time.perf_counter()
        first, pieces = 0.0, 0
        async with client.stream("POST", f"{base_url}/chat/completions", json=body) as response:
            async for delta in deltas(response.aiter_lines()):
                if delta.text:
                    first = first or time.perf_counter() - started
                    pieces += 1
    return first, pieces / (time.perf_counter() - started - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    server = ServeProcess(build_checkpoints(MODEL_A)).start()
    settings = load_settings(
        {"ENGINE": "openai", "OPENAI_BASE_URL": server.base_url, "OPENAI_MODEL": MODEL_A},
        env_file=None,
    )
    engine = OpenAIEngine(settings)
    try:
        server.warm(MODEL_A)
        engine.load()
        runs: dict[str, list[tuple[float, float]]] = {"raw httpx": [], "engine": []}
        for _ in range(args.runs):
            runs["raw httpx"].append(asyncio.run(raw(server.base_url, args.tokens)))
            runs["engine"].append(through_engine(engine, args.tokens))
    finally:
        engine.close()
        server.stop()
    base_first = statistics.median(r[0] for r in runs["raw httpx"])
    base_rate = statistics.median(r[1] for r in runs["raw httpx"])
    print(f"{'path':<10} {'first text ms':>14} {'ratio':>6} {'pieces/s':>9} {'ratio':>6}")
    for name, results in runs.items():
        first = statistics.median(r[0] for r in results)
        rate = statistics.median(r[1] for r in results)
        print(
            f"{name:<10} {first * 1000:>14.1f} {first / base_first:>6.2f} "
            f"{rate:>9.1f} {rate / base_rate:>6.2f}"
        )


if __name__ == "__main__":
    main()
