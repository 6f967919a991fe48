"""Request and response bodies of the watch-rule and alert routes."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from api.schemas import Request
from shared.rules import CONDITION_MAX, NAME_MAX


class RuleIn(Request):
    name: Annotated[str, Meta(min_length=1, max_length=NAME_MAX, examples=["Front door"])]
    condition: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=CONDITION_MAX,
            examples=["a person is visible"],
            description="A yes/no condition in words (the CPU engine: its vocabulary only)",
        ),
    ]
    fire_after: Annotated[
        int, Meta(ge=1, le=100, description="Windows in a row the condition must hold to fire")
    ] = 1
    clear_after: Annotated[
        int, Meta(ge=1, le=100, description="Windows in a row it must not hold to clear")
    ] = 2
    cooldown_s: Annotated[
        float, Meta(ge=0, le=86_400, description="Least seconds between two fired alerts")
    ] = 60.0
    webhook: Annotated[
        str,
        Meta(max_length=2048, description="http(s) URL that gets every alert (empty: none)"),
    ] = ""
    mqtt: bool = True
    muted: bool = False


class RuleOut(msgspec.Struct):
    id: str
    name: str
    condition: str
    fire_after: int
    clear_after: int
    cooldown_s: float
    webhook: str  # without password or query (they often carry secrets)
    mqtt: bool
    muted: bool
    created_at: float
    active: bool
    last_fired: float | None
    last_cleared: float | None
    last_alert: str


class RulesOut(msgspec.Struct):
    source: str
    engines: list[str]  # engines of the live workers (or ENGINE when none is up)
    decides: str  # what conditions those engines can decide
    rules: list[RuleOut]


class AlertOut(msgspec.Struct):
    id: str  # alerts stream id
    alert_id: str
    state: str
    rule_id: str
    rule: str
    condition: str
    ts: float
    cycle: str
    history_id: str
    frame_seqs: list[int]
    text: str
    snapshot: str


class AlertsOut(msgspec.Struct):
    source: str
    alerts: list[AlertOut]
