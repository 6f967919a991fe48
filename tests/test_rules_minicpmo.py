"""The rules pass through the real MiniCPM-o code: the tiny random-weights checkpoint of
tests/minicpmo_checkpoint.py answers the numbered yes/no prompt on real frames. What random
weights say is noise, so the assertions are about the pass, not about the answers."""

from __future__ import annotations

from typing import Any

from tests.minicpmo_checkpoint import engine, frames, tiny_checkpoint
from worker.engines.base import EngineRequest, WindowFrame

__all__ = ["engine", "frames", "tiny_checkpoint"]  # fixtures


def test_the_real_model_code_answers_every_rule_in_one_pass(
    engine: Any, frames: list[WindowFrame]
) -> None:
    request = EngineRequest(source="cam", frames=frames, instruction="Describe.")
    verdicts = engine.judge(request, ["a person is at the door", "it is dark", "a pot boils"])
    assert len(verdicts) == 3
    assert all(v is None or isinstance(v, bool) for v in verdicts)
    assert engine.judge(request, []) == []
