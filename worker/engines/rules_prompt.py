"""The rules pass of model engines: every active rule of a source answered yes or no at once.

After the commentary of a window, a model engine gets one more prompt on the same frames that
lists each rule's condition as a numbered question and asks for `N: yes` or `N: no`, one line
each. `parse_verdicts` reads the answer strictly: every number from 1 to N exactly once. The
documented fallback, for models that drop the numbers: when the answer holds exactly N
yes/no words, they are taken in order. Anything else decides nothing (None for every rule), so
a garbled answer never fires or clears a rule.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from worker.engines.base import EngineRequest

_LINE = re.compile(r"^\s*(?:question\s*)?(\d{1,3})\s*[:.)\-]\s*\**\s*(yes|no)\b", re.I | re.M)
_WORD = re.compile(r"\b(yes|no)\b", re.I)
TOKENS_PER_RULE = 6  # "12: yes\n" is about 4 tokens; the rest is slack


def rules_prompt(conditions: Sequence[str]) -> str:
    """The prompt of the rules pass: one numbered yes/no question per condition."""
    lines = [
        "Look at the frames and answer each question with yes or no only.",
        "Reply with one line per question, exactly in the form `1: yes` or `1: no`, nothing else.",
        "",
    ]
    lines += [f"{n}: Is this true now: {c.strip()}?" for n, c in enumerate(conditions, 1)]
    return "\n".join(lines)


def rules_request(request: EngineRequest, conditions: Sequence[str]) -> EngineRequest:
    """The generation of the rules pass on `request`'s frames: the rules prompt, no context,
    no speech, its token budget. The one place it is built: `Engine.judge` streams it under
    the engine lock, the runner submits it to an open batch (they must never differ)."""
    return replace(
        request,
        instruction=rules_prompt(conditions),
        context=(),
        max_new_tokens=max_tokens(len(conditions)),
        speak=False,
        kind="answer",
    )


def max_tokens(count: int) -> int:
    """The token budget of the rules pass for `count` rules."""
    return TOKENS_PER_RULE * count + 8


def parse_verdicts(text: str, count: int) -> list[bool | None]:
    """The yes/no of each of `count` questions in a model's answer (see the module doc)."""
    answers: dict[int, bool] = {}
    for match in _LINE.finditer(text):
        number, word = int(match[1]), match[2].lower() == "yes"
        if number in answers and answers[number] != word:
            return [None] * count  # two different answers to one question: decide nothing
        answers[number] = word
    if set(answers) == set(range(1, count + 1)):
        return [answers[n] for n in range(1, count + 1)]
    words = [w.lower() == "yes" for w in _WORD.findall(text)]
    if not answers and len(words) == count:
        return list(words)
    return [None] * count
