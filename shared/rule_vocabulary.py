"""The conditions the CPU engine can honestly decide, parsed from a rule's words.

The CPU engine measures pixels (worker/engines/cpu_analysis.py): people, faces, motion and where
it is, colours, light and scene cuts, nothing else. A condition is accepted only when one
phrase of this vocabulary covers it and every other word is filler ("a", "is", "visible"...):
"a person is visible" parses, "a person is at the door" does not ("door" is not something it
can see), so the API refuses it at creation with `VOCABULARY` in the message. The API (which
refuses) and the worker (which decides) both import this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

import msgspec

Topic = Literal["people", "faces", "motion", "colour", "light", "scene"]
REGIONS = ("left", "centre", "right")
COLOURS = (
    "red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown", "white",
    "grey", "black",
)  # fmt: skip
VOCABULARY = (
    'people ("a person is visible", "someone enters", "no one is there", "at least 2 people"); '
    'faces ("a face is visible", "no face"); motion ("something is moving", "motion on the '
    'left|centre|right", "nothing is moving"); colours ("red is visible", "mostly blue"); '
    'light ("it is dark", "it is bright", "the light goes off|on", "it gets darker|brighter", '
    '"the light changes"); scene cuts ("the scene changes")'
)
_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10,
}  # fmt: skip
# Words that add nothing the engine would have to decide.
FILLER = frozenset(
    """a an the is are am be being there here it its this that in on at of to into within
    visible seen shown present view frame picture image video camera scene screen shot now
    currently any some somewhere appears appear appear shows show up enters enter entering
    arrives arrive comes come inside standing stands detected detect becomes become gets get
    something anything please tell me when if whenever""".split()
)


class ConditionError(ValueError):
    """A condition outside the CPU engine's vocabulary; the message says what it can decide."""


class Condition(msgspec.Struct, frozen=True, kw_only=True):
    """One decidable condition: a topic and what must hold for it."""

    topic: Topic
    at_least: int = 1  # people, faces: how many
    none: bool = False  # "no one", "nothing is moving", "no face"
    region: str = ""  # motion: left, centre or right ("" anywhere)
    colour: str = ""  # colour: the colour's name
    mostly: bool = False  # colour: it covers most of the picture
    level: str = ""  # light: dark, bright, darker, brighter, change


def _count(word: str) -> int:
    return int(word) if word.isdigit() else _NUMBER_WORDS[word]


_N = r"(\d{1,2}|one|two|three|four|five|six|seven|eight|nine|ten)"
_PEOPLE = (
    r"(?:people|persons?|humans?|pedestrians?|men|women|man|woman|somebody|someone|anyone|anybody)"
)
_MOVING = r"(?:motion|movement|something is moving|anything is moving|something moving|anything moving|something moves|moving|moves)"
_Build = Callable[[re.Match[str]], Condition]
# Checked in order: the first pattern found decides the topic; the rest must be filler.
_PATTERNS: list[tuple[re.Pattern[str], _Build]] = [
    (re.compile(r"\b(?:scene (?:cut|cuts|changes|changed|change)|cut to|new scene)\b"),
     lambda m: Condition(topic="scene")),
    (re.compile(r"\bno (?:faces?|one s face)\b"), lambda m: Condition(topic="faces", none=True)),
    (re.compile(rf"\b(?:at least|more than) {_N} faces?\b"),
     lambda m: Condition(topic="faces", at_least=_count(m[1]) + ("more" in m[0]))),
    (re.compile(r"\b(?:a |one )?faces?\b"), lambda m: Condition(topic="faces")),
    (re.compile(r"\b(?:no one|noone|nobody|no people|no persons?|no humans?)\b"),
     lambda m: Condition(topic="people", none=True)),
    (re.compile(rf"\b(?:at least|more than) {_N} {_PEOPLE}\b"),
     lambda m: Condition(topic="people", at_least=_count(m[1]) + ("more" in m[0]))),
    (re.compile(rf"\b{_N} or more {_PEOPLE}\b"),
     lambda m: Condition(topic="people", at_least=_count(m[1]))),
    (re.compile(rf"\b(?:a |one )?{_PEOPLE}\b"), lambda m: Condition(topic="people")),
    (re.compile(r"\b(?:nothing is moving|nothing moves|no motion|no movement|all is still)\b"),
     lambda m: Condition(topic="motion", none=True)),
    (re.compile(rf"\b{_MOVING} (?:is )?(?:on|in|at) the (left|centre|right)(?: side)?\b"),
     lambda m: Condition(topic="motion", region=m[1])),
    (re.compile(rf"\b{_MOVING}\b"), lambda m: Condition(topic="motion")),
    (re.compile(r"\b(?:lights? (?:goes|go|went|turns|turn|turned|switch|switches) (?:off|out)|gets? darker|darker)\b"),
     lambda m: Condition(topic="light", level="darker")),
    (re.compile(r"\b(?:lights? (?:goes|go|went|turns|turn|turned|switch|switches) on|gets? brighter|brighter)\b"),
     lambda m: Condition(topic="light", level="brighter")),
    (re.compile(r"\b(?:light|lighting|brightness) (?:changes|changed|change)\b"),
     lambda m: Condition(topic="light", level="change")),
    (re.compile(r"\b(?:dark|night)\b"), lambda m: Condition(topic="light", level="dark")),
    (re.compile(r"\b(?:bright|daylight)\b"), lambda m: Condition(topic="light", level="bright")),
    (re.compile(rf"\b(?:(mostly) )?({'|'.join(COLOURS)})(?: colour| things?| objects?)?\b"),
     lambda m: Condition(topic="colour", colour=m[2], mostly=bool(m[1]))),
]  # fmt: skip


def normalise(text: str) -> str:
    """Lower-case words separated by single spaces, with British spelling of the regions."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    spelled = {"center": "centre", "middle": "centre", "gray": "grey", "color": "colour"}
    return " ".join(spelled.get(w, w) for w in words)


def parse_condition(text: str) -> Condition:
    """The condition `text` states, or ConditionError naming what the engine cannot decide."""
    words = normalise(text)
    if not words:
        raise ConditionError(f"the condition is empty; the CPU engine can decide: {VOCABULARY}")
    for pattern, build in _PATTERNS:
        match = pattern.search(words)
        if match is None:
            continue
        rest = (words[: match.start()] + " " + words[match.end() :]).split()
        unknown = [w for w in rest if w not in FILLER]
        if unknown:
            raise ConditionError(
                f"the CPU engine cannot decide {' '.join(unknown)!r} in {text!r}; "
                f"it can decide: {VOCABULARY}"
            )
        return build(match)
    raise ConditionError(f"the CPU engine cannot decide {text!r}; it can decide: {VOCABULARY}")
