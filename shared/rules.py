"""Watch rules of a source and their state, as stored in Redis beside the source.

A rule is a yes/no condition in words ("a person is visible") that the worker decides once per
commentary window. Rules live in the hash `Keys.rules(source)` (rule id -> JSON of `Rule`); the
worker keeps each rule's debounce state in `Keys.rule_states(source)` (rule id -> JSON of
`RuleState`), so a worker that takes the source over goes on where the last one stopped and the
API can show when a rule last fired. `RuleStore` is the one reader and writer of both.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Literal

import msgspec
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.settings import Settings
from shared.urlpolicy import SourcePolicy

RULE_ID_RE = re.compile(r"^[a-z0-9]{1,16}$")
MAX_RULES_PER_SOURCE = 32  # every active rule is answered in one pass per window
NAME_MAX = 80
CONDITION_MAX = 200
AlertState = Literal["fired", "cleared"]


class Rule(msgspec.Struct, frozen=True, kw_only=True):
    """A watch rule: when `condition` holds for `fire_after` windows in a row it fires; when it
    does not hold for `clear_after` windows it clears; it fires again only `cooldown_s` after it
    last fired. Alerts go to `webhook` (a URL, optional) and to MQTT when `mqtt` is on."""

    id: str
    name: str
    condition: str
    fire_after: int = 1
    clear_after: int = 2
    cooldown_s: float = 60.0
    webhook: str = ""
    mqtt: bool = True
    muted: bool = False  # a muted rule is not decided and sends nothing
    created_at: float = 0.0


class RuleState(msgspec.Struct, kw_only=True):
    """Where a rule stands: firing or not, the current run of answers, when it last changed."""

    active: bool = False
    yes_run: int = 0  # consecutive windows the condition held
    no_run: int = 0  # consecutive windows it did not
    last_fired: float = 0.0
    last_cleared: float = 0.0
    last_alert: str = ""  # id of the newest alert of this rule


def new_rule_id() -> str:
    """A short random id (lower-case hex), unique enough among a source's rules."""
    return secrets.token_hex(4)


_rule_json = msgspec.json.Decoder(Rule)
_state_json = msgspec.json.Decoder(RuleState)


class RuleStore:
    """Rules and rule states of sources in Redis (hashes keyed by rule id, JSON values)."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def rules(self, source: str) -> list[Rule]:
        """Every rule of `source`, oldest first; an unreadable entry is skipped."""
        raw = await self._redis.hgetall(self._keys.rules(source))  # type: ignore[misc]
        rules: list[Rule] = []
        for value in raw.values():
            try:
                rules.append(_rule_json.decode(value))
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue  # a hand-edited entry: the rule is not served
        return sorted(rules, key=lambda r: (r.created_at, r.id))

    async def get(self, source: str, rule_id: str) -> Rule | None:
        raw = await self._redis.hget(self._keys.rules(source), rule_id)  # type: ignore[misc]
        if raw is None:
            return None
        try:
            return _rule_json.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None

    async def count(self, source: str) -> int:
        return int(await self._redis.hlen(self._keys.rules(source)))  # type: ignore[misc]

    async def put(self, source: str, rule: Rule) -> None:
        if not rule.created_at:
            rule = msgspec.structs.replace(rule, created_at=time.time())
        await self._redis.hset(
            self._keys.rules(source), rule.id, msgspec.json.encode(rule).decode()
        )  # type: ignore[misc]

    async def delete(self, source: str, rule_id: str) -> bool:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._keys.rules(source), rule_id)
            pipe.hdel(self._keys.rule_states(source), rule_id)
            removed, _ = await pipe.execute()
        return bool(removed)

    async def states(self, source: str) -> dict[str, RuleState]:
        raw = await self._redis.hgetall(self._keys.rule_states(source))  # type: ignore[misc]
        states: dict[str, RuleState] = {}
        for rule_id, value in raw.items():
            try:
                states[rule_id.decode() if isinstance(rule_id, bytes) else str(rule_id)] = (
                    _state_json.decode(value)
                )
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue  # starts afresh
        return states

    async def save_state(self, source: str, rule_id: str, state: RuleState) -> None:
        # Only for rules that still exist: a rule deleted mid-window leaves no state behind.
        if await self._redis.hexists(self._keys.rules(source), rule_id):  # type: ignore[misc]
            await self._redis.hset(  # type: ignore[misc]
                self._keys.rule_states(source), rule_id, msgspec.json.encode(state).decode()
            )


def webhook_policy(settings: Settings) -> SourcePolicy:
    """Where webhooks may go: http(s) only, private and loopback as WEBHOOK_ALLOW_* say;
    link-local, metadata and the like never (the same address checks as sources)."""
    return SourcePolicy(
        schemes=frozenset({"http", "https"}),
        file_roots=(),
        allow_private=settings.webhook_allow_private,
        allow_loopback=settings.webhook_allow_loopback,
    )
