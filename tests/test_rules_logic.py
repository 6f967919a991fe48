"""Watch rules without processes: the CPU vocabulary, deciding on drawn frames, the model
engines' yes/no pass (prompt and strict parse, and the real pass through a model engine's
stream), and the debounce and cool-down of `step`."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from shared.rule_vocabulary import Condition, ConditionError, parse_condition
from shared.rules import Rule, RuleState
from shared.settings import Settings
from tests.test_cpu_engine import blank, field, silhouette
from worker.engines.base import Chunk, Engine, EngineInfo, EngineRequest, WindowFrame
from worker.engines.cpu import CpuEngine
from worker.engines.rules_prompt import parse_verdicts, rules_prompt
from worker.rules import step


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A person is visible", Condition(topic="people")),
        ("tell me when someone enters", Condition(topic="people")),
        ("No one is there", Condition(topic="people", none=True)),
        ("at least 2 people", Condition(topic="people", at_least=2)),
        ("more than two persons are in view", Condition(topic="people", at_least=3)),
        ("a face is visible", Condition(topic="faces")),
        ("something is moving", Condition(topic="motion")),
        ("motion on the left", Condition(topic="motion", region="left")),
        ("Movement in the middle of the picture", Condition(topic="motion", region="centre")),
        ("nothing is moving", Condition(topic="motion", none=True)),
        ("red is visible", Condition(topic="colour", colour="red")),
        ("it is mostly blue", Condition(topic="colour", colour="blue", mostly=True)),
        ("it is dark", Condition(topic="light", level="dark")),
        ("the light goes off", Condition(topic="light", level="darker")),
        ("the scene changes", Condition(topic="scene")),
    ],
)
def test_the_vocabulary_parses_what_the_cpu_engine_measures(text: str, expected: Condition) -> None:
    assert parse_condition(text) == expected


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("a person is at the door", "door"),
        ("the pot boils over", "pot boils over"),
        ("a red car is parked", "car parked"),
        ("", "empty"),
        ("\x00\u202e" * 50, "empty"),
    ],
)
def test_what_it_cannot_see_is_refused_naming_the_words(text: str, named: str) -> None:
    with pytest.raises(ConditionError) as caught:
        parse_condition(text)
    assert named in str(caught.value)
    assert "it can decide" in str(caught.value) or "empty" in str(caught.value)


@pytest.fixture(scope="module")
def cpu() -> CpuEngine:
    engine = CpuEngine(Settings(enable_tts=False))
    engine.load()
    return engine


def window(*images: object) -> EngineRequest:
    frames = [WindowFrame(seq=n, ts=float(n), image=i) for n, i in enumerate(images)]  # type: ignore[arg-type]
    return EngineRequest(source="cam", frames=frames, instruction="Describe.")


def test_the_cpu_engine_decides_drawn_people_and_light(cpu: CpuEngine) -> None:
    conditions = ["a person is visible", "no one is there", "it is dark", "a face is visible"]
    person = window(silhouette(field(), 320), silhouette(field(), 330))
    assert cpu.judge(person, conditions) == [True, False, False, False]
    empty = window(field(), field())
    assert cpu.judge(empty, conditions) == [False, True, False, False]
    night = window(blank((10, 10, 10)), blank((10, 10, 10)))
    assert cpu.judge(night, [*conditions, "a pot boils over"]) == [False, True, True, False, None]


def test_the_rules_pass_reuses_the_commentary_measures(cpu: CpuEngine) -> None:
    request = window(silhouette(field(), 320), field())
    list(cpu.stream(request, threading.Event()))
    measured = cpu.measure(request)
    assert cpu.measure(request) is measured  # the same frames: not measured again
    assert cpu.measure(window(field(), field())) is not measured


def test_the_prompt_numbers_each_condition() -> None:
    prompt = rules_prompt(["a person is at the door", "the pot boils over"])
    assert "1: Is this true now: a person is at the door?" in prompt
    assert "2: Is this true now: the pot boils over?" in prompt
    assert "`1: yes`" in prompt


@pytest.mark.parametrize(
    ("answer", "verdicts"),
    [
        ("1: yes\n2: no", [True, False]),
        ("2: No\n1: YES\n", [True, False]),
        ("Sure!\n1. yes\n2) no\nThat is all.", [True, False]),
        ("yes\nno", [True, False]),  # the fallback: exactly two yes/no words, in order
        ("1: yes", [None, None]),  # one missing: decide nothing
        ("1: yes\n1: no\n2: no", [None, None]),  # contradicts itself
        ("1: yes\n2: no\n3: yes", [None, None]),  # a third answer to two questions
        ("maybe", [None, None]),
        ("yes yes yes", [None, None]),
        ("", [None, None]),
    ],
)
def test_the_answer_is_parsed_strictly(answer: str, verdicts: list[bool | None]) -> None:
    assert parse_verdicts(answer, 2) == verdicts


class ReplyEngine(Engine):
    """A model engine stand-in whose stream says `reply`: the rules pass is the base class's."""

    name = "reply"

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.asked: list[EngineRequest] = []

    def load(self) -> EngineInfo:
        return EngineInfo(engine=self.name)

    def stream(self, request: EngineRequest, cancel: threading.Event) -> Iterator[Chunk]:
        self.asked.append(request)
        for part in self.reply.split(" "):
            yield Chunk(text=part + " ")


def test_a_model_engine_answers_every_rule_in_one_pass() -> None:
    engine = ReplyEngine("1: no\n2: yes")
    request = window(field(), field())
    assert engine.judge(request, ["a person is at the door", "a pot boils over"]) == [False, True]
    [asked] = engine.asked
    assert asked.kind == "answer" and not asked.speak and not asked.context
    assert asked.frames == request.frames and "2: Is this true now" in asked.instruction
    assert engine.judge(request, []) == [] and len(engine.asked) == 1


def rule(**kw: object) -> Rule:
    return Rule(id="r1", name="door", condition="a person is visible", **kw)  # type: ignore[arg-type]


def test_debounce_fires_after_n_yes_and_clears_after_m_no() -> None:
    r, s = rule(fire_after=2, clear_after=3, cooldown_s=0), RuleState()
    answers = [True, False, True, True, True, False, False, True, False, False, False, False]
    changes = [step(r, s, a, float(t)) for t, a in enumerate(answers)]
    assert changes == [
        None,
        None,
        None,
        "fired",
        None,
        None,
        None,
        None,
        None,
        None,
        "cleared",
        None,
    ]
    assert s.last_fired == 3.0 and s.last_cleared == 10.0 and not s.active


def test_an_undecided_window_changes_nothing() -> None:
    r, s = rule(fire_after=2, cooldown_s=0), RuleState()
    assert [step(r, s, a, 0.0) for a in (True, None, True)] == [None, None, "fired"]


def test_cool_down_holds_a_second_fire_until_it_is_over() -> None:
    r, s = rule(fire_after=1, clear_after=1, cooldown_s=10), RuleState()
    assert step(r, s, True, 100.0) == "fired"
    assert step(r, s, False, 101.0) == "cleared"
    assert step(r, s, True, 102.0) is None  # within 10 s of the last fire
    assert step(r, s, True, 109.9) is None
    assert step(r, s, True, 110.0) == "fired"  # still true once the cool-down is over
