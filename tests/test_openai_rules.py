"""Watch rules on ENGINE=openai: the rules pass is one more chat completion to the real
server (`transformers serve`, a tiny random-weights LLaVA built by the tests). Its words are
noise, so what is checked is the round trip: the numbered yes/no prompt goes to the server
with the window's frames, the server's text comes back, and the verdicts are exactly what
the strict parser makes of that text (noise decides nothing: it must never fire an alert)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from shared.settings import Settings
from tests.openai_server import ServeProcess
from tests.test_openai_engine import ask, engine_settings
from worker.engines.base import Chunk, EngineRequest
from worker.engines.openai_engine import OpenAIEngine
from worker.engines.rules_prompt import parse_verdicts


class Recording(OpenAIEngine):
    """The real engine, keeping each request it streamed and the text the server sent."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.seen: list[tuple[EngineRequest, str]] = []

    def stream(self, request: EngineRequest, cancel: threading.Event) -> Iterator[Chunk]:
        parts: list[str] = []
        for chunk in super().stream(request, cancel):
            parts.append(chunk.text)
            yield chunk
        self.seen.append((request, "".join(parts)))


def test_the_rules_pass_asks_the_server_and_decides_only_what_it_parses(
    openai_server: ServeProcess,
) -> None:
    engine = Recording(engine_settings(openai_server))
    try:
        engine.load()
        window = ask(8)
        verdicts = engine.judge(window, ["a person is visible", "it is dark"])
    finally:
        engine.close()
    [(asked, answer)] = engine.seen
    assert asked.frames == window.frames and not asked.speak
    assert "1: Is this true now: a person is visible?" in asked.instruction
    assert "2: Is this true now: it is dark?" in asked.instruction
    assert answer, "the server answered the rules prompt"
    assert verdicts == parse_verdicts(answer, 2)
    assert verdicts == [None, None], answer  # random weights: no numbered yes/no lines
