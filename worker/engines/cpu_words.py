"""Sentences from the CPU engine's measurements: short, honest, led by what was asked.

Each topic (people, faces, motion, colours, light, scene) has one sentence writer that says only
what `Measures` holds, with numbers in words ("No people are visible."). The instruction picks
the lead topics by keyword; a question (`kind == "answer"`) gets a direct answer first.
What was said before is left out unless the instruction asks for repeats (`cpu_memory`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from worker.engines.cpu_analysis import Measures
from worker.engines.cpu_memory import NOTHING_NEW, Said, asks_for_repeats, key, said_in, still
from worker.engines.cpu_motion import Thing

# Keywords are matched against whole words of the lower-cased instruction.
TOPIC_WORDS: dict[str, tuple[str, ...]] = {
    "people": (
        "people", "person", "persons", "someone", "somebody", "anyone", "anybody", "who",
        "enter", "enters", "entering", "man", "woman", "men", "women", "human", "humans",
        "pedestrian", "pedestrians", "crowd",
    ),
    "faces": ("face", "faces"),
    "motion": (
        "motion", "moving", "move", "moves", "movement", "moved", "motions", "still",
        "camera", "pan", "panning", "happening", "activity",
    ),
    "colours": ("colour", "colours", "color", "colors", "red", "green", "blue", "yellow"),
    "light": ("light", "lighting", "bright", "brightness", "dark", "darker", "brighter", "lit"),
    "scene": ("scene", "cut", "change", "changed", "changes"),
}  # fmt: skip
DEFAULT_ORDER = ("scene", "people", "faces", "motion", "colours", "light")
MAX_SENTENCES = 4
_NUMBERS = ("No", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine", "Ten")
_YES_NO = ("is", "are", "does", "do", "can", "has", "have", "did", "was", "were", "any")
BIG_LIGHT_CHANGE = 80.0  # grey levels, first frame to last: "much darker"
TREND = 20.0  # grey levels: "getting darker"
# Mean grey level of the last frame (upper bounds) and how it is said.
_LIGHT_LEVELS = ((40, "very dark"), (90, "dark"), (170, "moderately lit"), (256, "bright"))


def topics_of(instruction: str) -> list[str]:
    """The measurable topics the instruction mentions, in the order they appear in it."""
    words = re.findall(r"[a-z]+", instruction.lower())
    found: list[tuple[int, str]] = []
    for topic, keys in TOPIC_WORDS.items():
        positions = [i for i, w in enumerate(words) if w in keys]
        if positions:
            found.append((min(positions), topic))
    return [topic for _, topic in sorted(found)]


def count_words(n: int, one: str, many: str) -> str:
    """'No people', 'One person', 'Two people', '12 people'."""
    number = _NUMBERS[n] if n < len(_NUMBERS) else str(n)
    return f"{number} {one if n == 1 else many}"


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _places(where: Sequence[str]) -> str:
    spots = sorted(set(where), key=("left", "centre", "right").index)
    return _join([f"on the {w}" if w != "centre" else "in the centre" for w in spots])


def people_sentence(m: Measures) -> str:
    verb = "is" if m.people == 1 else "are"
    return f"{count_words(m.people, 'person', 'people')} {verb} visible."


def faces_sentence(m: Measures) -> str:
    verb = "is" if m.faces == 1 else "are"
    text = f"{count_words(m.faces, 'face', 'faces')} {verb} visible"
    return f"{text}, {_places(m.face_where)}." if m.faces else f"{text}."


def motion_sentence(m: Measures) -> str:
    motion = m.motion
    if not motion.moving:
        return "Nothing is moving." if m.frames > 1 else "One frame only, so no motion to measure."
    if len(motion.things) > 1:
        return things_sentence(motion.things)
    if motion.camera:
        return f"The camera is moving: the whole view shifts {motion.direction}."
    heading = f", heading {motion.direction}" if motion.direction else ""
    if motion.where == "everywhere":
        return f"The whole picture is changing{heading}."
    size = "A large area" if motion.fraction > 0.15 else "Something"
    return f"{size} is moving {_places([motion.where])}{heading}."


def things_sentence(things: Sequence[Thing]) -> str:
    """'Two things are moving apart: one on the left heading left and one on the right ...'"""
    parts = [
        f"one {_places([t.where])}" + (f" heading {t.direction}" if t.direction else "")
        for t in things
    ]
    return f"{count_words(len(things), 'thing', 'things')} are moving{_relative(things)}: {_join(parts)}."


def _relative(things: Sequence[Thing]) -> str:
    """' apart' or ' towards each other' for two things going sideways."""
    if len(things) != 2:
        return ""
    a, b = sorted(things, key=lambda t: t.x)
    if (a.direction, b.direction) == ("left", "right"):
        return " apart"
    if (a.direction, b.direction) == ("right", "left"):
        return " towards each other"
    return ""


def colours_sentence(m: Measures) -> str:
    main, share = m.colours[0]
    # A small patch of real colour is what a person would name; small grey areas are not.
    extras = [
        name
        for name, part in m.colours[1:]
        if part >= (0.03 if name not in ("black", "white", "grey") else 0.15)
    ][:2]
    lead = f"The picture is mostly {main}" if share >= 0.4 else f"The main colour is {main}"
    return f"{lead}, with some {_join(extras)}." if extras else f"{lead}."


def light_sentence(m: Measures) -> str:
    level = m.brightness[-1]
    word = next(name for upper, name in _LIGHT_LEVELS if level < upper)
    change = m.brightness_change
    if change <= -BIG_LIGHT_CHANGE:
        return f"The picture got much darker and is now {word}."
    if change >= BIG_LIGHT_CHANGE:
        return f"The picture got much brighter and is now {word}."
    if change <= -TREND:
        return f"It is getting darker; the picture is {word}."
    if change >= TREND:
        return f"It is getting brighter; the picture is {word}."
    return f"The picture is {word}, and the light is steady."


def scene_sentence(m: Measures) -> str:
    if m.scene_cut:
        return "The scene changed completely during these frames."
    if m.frames > 1 and m.scene_diff < 2.0:
        return "The scene stays the same."
    return "The scene is the same, with some changes."


WRITERS: dict[str, Callable[[Measures], str]] = {
    "people": people_sentence,
    "faces": faces_sentence,
    "motion": motion_sentence,
    "colours": colours_sentence,
    "light": light_sentence,
    "scene": scene_sentence,
}


def answer_sentence(question: str, topic: str, m: Measures) -> str:
    """A direct answer: 'Yes, ...' or 'No, ...' to a yes-no question about presence, else the fact."""
    fact = WRITERS[topic](m)
    first = re.findall(r"[a-z]+", question.lower())[:1]
    present = {"people": m.people > 0, "faces": m.faces > 0, "motion": m.motion.moving}
    if first and first[0] in _YES_NO and topic in present:
        return f"{'Yes' if present[topic] else 'No'}, {fact[0].lower()}{fact[1:]}"
    return fact


def candidates(m: Measures, instruction: str, kind: str) -> list[tuple[str, str]]:
    """Every sentence worth saying as (topic, sentence): asked-about topics first."""
    asked = topics_of(instruction)
    found: list[tuple[str, str]] = []
    if kind == "answer" and not asked:
        found.append(
            (
                "limits",
                "I can only measure people, faces, motion, colours and light; here is what I see.",
            )
        )
    for topic in asked:
        sentence = answer_sentence(instruction, topic, m) if kind == "answer" else WRITERS[topic](m)
        found.append((topic, sentence))
    for topic in DEFAULT_ORDER:
        if topic in asked or (topic == "scene" and not m.scene_cut):
            continue
        if topic == "faces" and m.faces == 0:
            continue  # "no faces" adds nothing unless asked
        found.append((topic, WRITERS[topic](m)))
    return found


def compose(
    m: Measures,
    instruction: str,
    context: Sequence[str],
    kind: str,
    max_words: int,
    said: Said | None = None,
) -> list[tuple[str, str]]:
    """Up to 4 (topic, sentence) pairs, asked-about topics first, leaving out repeats.

    A repeat is a sentence of the previous commentary (`context`) or the last one `said` on its
    topic. Questions are answered in full; an instruction that asks for repeats gets them
    reworded ("Still, ..."); when everything is a repeat, only `NOTHING_NEW` is said.
    """
    found = candidates(m, instruction, kind)
    if kind == "answer":
        return _limit(found[:MAX_SENTENCES], max_words)
    earlier = said_in(context)
    repeat = asks_for_repeats(instruction)
    out: list[tuple[str, str]] = []
    for topic, sentence in found:
        again = key(sentence) in earlier or (said is not None and said.repeats(topic, sentence))
        if again and not repeat:
            continue
        out.append((topic, still(sentence) if again else sentence))
    return _limit(out[:MAX_SENTENCES] or [("nothing", NOTHING_NEW)], max_words)


def _limit(sentences: list[tuple[str, str]], max_words: int) -> list[tuple[str, str]]:
    """Stop before the sentence that would pass `max_words` (always keep the first)."""
    kept: list[tuple[str, str]] = []
    total = 0
    for topic, sentence in sentences:
        total += len(sentence.split())
        if kept and total > max_words:
            break
        kept.append((topic, sentence))
    return kept
