"""What the CPU engine already said to a source, so a repeated observation is said once.

Each topic (motion, colours, light ...) remembers the last sentence said on it. A sentence equal
to that one, or to a sentence of the previous commentary (the worker's context), is a repeat and
is left out: after the first full description only changes are said, and when nothing changed
the commentary is just "No change since the last comment.".

The memory of a source starts afresh whenever the worker sends no context: at the first cycle,
after an instruction change (the worker then clears its context), and always with
CONTEXT_COMMENTARIES=0, which therefore means "describe everything every time". One-off
questions are always answered in full and leave the memory as it was.

An instruction asks for repeats ("asks otherwise") when it holds one of `REPEAT_PHRASES` as
whole words, such as "always describe the colours" or "tell me every time who is there": then
everything is said every cycle, repeats reworded as "Still, ...".
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

REPEAT_PHRASES = (
    "always",
    "every time",
    "each time",
    "every cycle",
    "each cycle",
    "all the time",
    "repeat",
    "repeatedly",
    "continuously",
    "constantly",
    "even if",
    "keep saying",
    "keep telling",
    "keep describing",
)
NOTHING_NEW = "No change since the last comment."
MAX_REMEMBERED_SOURCES = 1024  # a worker that served more sources forgets the oldest
_NUMBERS = ("No", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine", "Ten")


def asks_for_repeats(instruction: str) -> bool:
    """True if the instruction asks to hear unchanged observations again (`REPEAT_PHRASES`)."""
    words = " " + " ".join(re.findall(r"[a-z]+", instruction.lower())) + " "
    return any(f" {phrase} " in words for phrase in REPEAT_PHRASES)


def key(sentence: str) -> str:
    """Compare sentences without case, punctuation or a leading 'Still'."""
    words = re.findall(r"[a-z0-9]+", sentence.lower())
    return " ".join(words[1:] if words[:1] == ["still"] else words)


def said_in(context: Sequence[str]) -> set[str]:
    """The keys of every sentence of the previous commentaries."""
    said: set[str] = set()
    for text in context:
        for sentence in re.split(r"(?<=[.!?])\s+", text.strip()):
            if sentence:
                said.add(key(sentence))
    return said


def still(sentence: str) -> str:
    """'No people are visible.' -> 'Still no people are visible.'"""
    sentence = sentence.removeprefix("Still, ").removeprefix("Still ")
    bare = sentence.split(" ", 1)[0] in _NUMBERS or sentence.startswith("Nothing")
    lowered = sentence[0].lower() + sentence[1:]
    return f"Still {lowered}" if bare else f"Still, {lowered}"


@dataclass
class Said:
    """The last sentence said on each topic to one source."""

    last: dict[str, str] = field(default_factory=dict)  # topic -> key of its last sentence
    instruction: str = ""  # what was asked when these were said

    def repeats(self, topic: str, sentence: str) -> bool:
        return self.last.get(topic) == key(sentence)

    def record(self, topic: str, sentence: str) -> None:
        self.last[topic] = key(sentence)


class Memory:
    """`Said` per source, for one engine."""

    def __init__(self) -> None:
        self._sources: OrderedDict[str, Said] = OrderedDict()

    def for_source(self, source: str, instruction: str, context: Sequence[str]) -> Said:
        """The source's memory; a fresh one when the worker sent no context or the
        instruction is not the one the memory was made under."""
        said = self._sources.pop(source, None)
        if said is None or not context or said.instruction != instruction:
            said = Said(instruction=instruction)
        self._sources[source] = said
        while len(self._sources) > MAX_REMEMBERED_SOURCES:
            self._sources.popitem(last=False)
        return said
