"""What the API does with watch rules and alerts, apart from HTTP.

A rule's condition is checked against what the engines that may decide it can decide: the
engines of the live workers (their heartbeats, `WorkerBeat.engine`), or ENGINE when no worker
is up. If any of them is the CPU engine, the condition must parse in its vocabulary
(shared/rule_vocabulary.py), since the source may move to that worker; otherwise any yes/no
question is accepted.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import msgspec
from litestar.exceptions import NotFoundException

from api.errors import FieldError
from api.rules_schemas import AlertOut, AlertsOut, RuleIn, RuleOut, RulesOut
from api.services import Service, bounded_text
from shared.alerts import source_alerts
from shared.record_fields import RecordError, as_text
from shared.rule_vocabulary import VOCABULARY, ConditionError, parse_condition
from shared.rules import (
    CONDITION_MAX,
    MAX_RULES_PER_SOURCE,
    NAME_MAX,
    Rule,
    RuleState,
    RuleStore,
    new_rule_id,
    webhook_policy,
)
from shared.status_records import WorkerBeat
from shared.urlpolicy import SourcePolicyError, check_source_url

MODEL_DECIDES = "any yes/no question about the picture (answered by the model)"


class UnknownRuleError(NotFoundException):
    def __init__(self, rule_id: str) -> None:
        super().__init__(detail=f"no rule {rule_id!r} on this source")


def redact_webhook(url: str) -> str:
    """`url` without password and query: what a viewer may see of a webhook."""
    if not url:
        return ""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    query = "?…" if parts.query else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{query}"


class RuleService(Service):
    """Rules and alerts of one source, for one request."""

    @property
    def store(self) -> RuleStore:
        return RuleStore(self.redis, self.keys)

    async def engines(self) -> list[str]:
        """Engines of the live workers, or ENGINE when none is up."""
        found: set[str] = set()
        async for key in self.redis.scan_iter(match=self.keys.worker_pattern, count=100):
            raw = await self.redis.hgetall(as_text(key))  # type: ignore[misc]
            try:
                engine = WorkerBeat.from_fields(raw).engine if raw else ""
            except RecordError:
                engine = ""
            if engine:
                found.add(engine)
        return sorted(found) or [self.settings.engine]

    async def list(self, source: str) -> RulesOut:
        await self.require(source)
        engines = await self.engines()
        states = await self.store.states(source)
        rules = [_out(rule, states.get(rule.id)) for rule in await self.store.rules(source)]
        decides = VOCABULARY if "cpu" in engines else MODEL_DECIDES
        return RulesOut(source, engines, decides, rules)

    async def add(self, source: str, data: RuleIn) -> RuleOut:
        await self.require(source)
        if await self.store.count(source) >= MAX_RULES_PER_SOURCE:
            raise FieldError("rules", f"at most {MAX_RULES_PER_SOURCE} rules per source")
        rule = await self._checked(new_rule_id(), data, "")
        rule = msgspec.structs.replace(rule, created_at=time.time())
        await self.store.put(source, rule)
        return _out(rule, None)

    async def update(self, source: str, rule_id: str, data: RuleIn) -> RuleOut:
        await self.require(source)
        old = await self.store.get(source, rule_id)
        if old is None:
            raise UnknownRuleError(rule_id)
        rule = await self._checked(rule_id, data, old.webhook)
        rule = msgspec.structs.replace(rule, created_at=old.created_at)
        await self.store.put(source, rule)
        states = await self.store.states(source)
        state = states.get(rule_id)
        if rule.muted or rule.condition != old.condition:
            # A muted or changed rule starts afresh: its old runs say nothing about it now.
            await self.redis.hdel(self.keys.rule_states(source), rule_id)  # type: ignore[misc]
            state = None
        return _out(rule, state)

    async def delete(self, source: str, rule_id: str) -> None:
        await self.require(source)
        if not await self.store.delete(source, rule_id):
            raise UnknownRuleError(rule_id)

    async def alerts(self, source: str, limit: int) -> AlertsOut:
        await self.require(source)
        found = await source_alerts(self.redis, self.keys, source, limit)
        items = [
            AlertOut(
                entry_id,
                a.alert_id,
                a.state,
                a.rule_id,
                a.rule,
                a.condition,
                a.ts,
                a.cycle,
                a.history_id,
                a.frame_seqs,
                a.text,
                a.snapshot,
            )  # fmt: skip
            for entry_id, a in found
        ]
        return AlertsOut(source, items)

    async def snapshot(self, source: str, alert_id: str) -> bytes:
        await self.require(source)
        jpeg = await self.redis.get(self.keys.alert_snapshot(source, alert_id))
        if jpeg is None:
            raise NotFoundException(detail="no snapshot of this alert (unknown, or expired)")
        return bytes(jpeg)

    async def _checked(self, rule_id: str, data: RuleIn, old_webhook: str) -> Rule:
        name = bounded_text("name", data.name, NAME_MAX)
        condition = bounded_text("condition", data.condition, CONDITION_MAX)
        if "cpu" in await self.engines():
            try:
                parse_condition(condition)
            except ConditionError as exc:
                raise FieldError("condition", str(exc)) from None
        webhook = data.webhook.strip()
        if old_webhook and webhook == redact_webhook(old_webhook):
            webhook = old_webhook  # the page sends back what it was shown: keep the real one
        if webhook:
            try:
                check_source_url(webhook, webhook_policy(self.settings))
            except SourcePolicyError as exc:
                raise FieldError("webhook", str(exc)) from None
        return Rule(
            id=rule_id,
            name=name,
            condition=condition,
            fire_after=data.fire_after,
            clear_after=data.clear_after,
            cooldown_s=data.cooldown_s,
            webhook=webhook,
            mqtt=data.mqtt,
            muted=data.muted,
        )


def _out(rule: Rule, state: RuleState | None) -> RuleOut:
    s = state or RuleState()
    return RuleOut(
        id=rule.id,
        name=rule.name,
        condition=rule.condition,
        fire_after=rule.fire_after,
        clear_after=rule.clear_after,
        cooldown_s=rule.cooldown_s,
        webhook=redact_webhook(rule.webhook),
        mqtt=rule.mqtt,
        muted=rule.muted,
        created_at=rule.created_at,
        active=s.active,
        last_fired=s.last_fired or None,
        last_cleared=s.last_cleared or None,
        last_alert=s.last_alert,
    )
