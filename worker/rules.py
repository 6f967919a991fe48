"""Watch rules in the worker: after each commentary, decide every active rule of the source.

The rules pass follows the commentary of a window (so it never delays the first chunk), on the
same frames, through the same engine lock: the CPU engine decides from the window's
measurements, model engines answer all rules in one yes/no prompt (worker/engines/base.py).
While a batch is open (MAX_BATCH > 1), that prompt joins it instead of waiting for the lock
(`EngineRunner.judge`).
Each answer moves the rule's debounce state (`step`); a change of state is an alert, recorded
with the window's newest JPEG, the commentary and its history id (shared/alerts.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import msgspec
import redis.asyncio as aioredis

from shared.alerts import alert_id, record_alert, snapshot_path
from shared.keys import Keys
from shared.messages import AlertEvent
from shared.rules import AlertState, Rule, RuleState, RuleStore
from shared.settings import Settings
from worker.engines.base import EngineRequest, WindowFrame
from worker.runner import EngineFailure, EngineRunner

log = logging.getLogger(__name__)


def step(rule: Rule, state: RuleState, verdict: bool | None, now: float) -> AlertState | None:
    """Move `state` by one window's answer; "fired" or "cleared" when the rule changes state.

    It fires after `fire_after` yes in a row, unless it fired less than `cooldown_s` ago (it
    then fires once the cool-down is over, if the condition still holds); it clears after
    `clear_after` no in a row. An undecided window (None) changes nothing.
    """
    if verdict is None:
        return None
    if verdict:
        state.yes_run, state.no_run = state.yes_run + 1, 0
    else:
        state.yes_run, state.no_run = 0, state.no_run + 1
    if not state.active and state.yes_run >= rule.fire_after:
        if now - state.last_fired >= rule.cooldown_s:
            state.active, state.last_fired = True, now
            return "fired"
    if state.active and state.no_run >= rule.clear_after:
        state.active, state.last_cleared = False, now
        return "cleared"
    return None


class RuleWatch:
    """Decides the rules of the sources one worker comments on and records their alerts."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        settings: Settings,
        runner: EngineRunner,
        worker_id: str,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._runner = runner
        self._store = RuleStore(redis, keys)
        self.worker_id = worker_id

    async def after_commentary(
        self,
        source: str,
        frames: Sequence[WindowFrame],
        instruction: str,
        cycle: str,
        history_id: str,
        text: str,
    ) -> list[AlertEvent]:
        """Decide the source's active rules on `frames`; record and return the alerts."""
        rules = [rule for rule in await self._store.rules(source) if not rule.muted]
        if not rules or not frames:
            return []
        request = EngineRequest(source=source, frames=frames, instruction=instruction)
        try:
            verdicts = await self._runner.judge(request, [rule.condition for rule in rules])
        except EngineFailure as exc:
            log.error("%s: the rules pass failed: %s", source, exc)
            return []
        if len(verdicts) != len(rules):  # an engine's bug must not shift answers onto rules
            log.error("%s: %d answers for %d rules", source, len(verdicts), len(rules))
            return []
        states = await self._store.states(source)
        alerts: list[AlertEvent] = []
        now = time.time()
        for rule, verdict in zip(rules, verdicts, strict=True):
            state = states.get(rule.id, RuleState())
            change = step(rule, state, verdict, now)
            if change is None:
                await self._store.save_state(source, rule.id, state)
                continue
            alert = self._alert(source, rule, change, frames, cycle, history_id, text)
            state.last_alert = alert.alert_id
            await record_alert(
                self._redis,
                self._keys,
                alert,
                frames[-1].jpeg,
                maxlen=self._settings.alerts_maxlen,
                snapshot_ttl=self._settings.alert_snapshot_ttl,
                rule_state=msgspec.json.encode(state).decode(),
            )
            alerts.append(alert)
            log.info("%s: rule %r %s (%s)", source, rule.name, change, alert.alert_id)
        return alerts

    def _alert(
        self,
        source: str,
        rule: Rule,
        change: AlertState,
        frames: Sequence[WindowFrame],
        cycle: str,
        history_id: str,
        text: str,
    ) -> AlertEvent:
        ident = alert_id(rule.id, cycle)
        return AlertEvent(
            source=source,
            alert_id=ident,
            state=change,
            rule_id=rule.id,
            rule=rule.name,
            condition=rule.condition,
            cycle=cycle,
            history_id=history_id,
            frame_seqs=[f.seq for f in frames],
            text=text,
            snapshot=snapshot_path(source, ident) if frames[-1].jpeg else "",
            worker=self.worker_id,
        )
