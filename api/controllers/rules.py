"""Watch rules of a source (list, add, edit, remove) and its alerts with their snapshots."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, delete, get, post, put
from litestar.params import Parameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from api import routes
from api.auth import CONTROL, require_scope
from api.controllers import CHANGES, MEDIA_SECURED, SECURED, errors
from api.errors import FieldError
from api.rules import RuleService
from api.rules_schemas import AlertsOut, RuleIn, RuleOut, RulesOut
from api.tokens import MEDIA
from shared.alerts import ALERT_ID_RE
from shared.rules import RULE_ID_RE

Limit = Annotated[int, Parameter(ge=1, le=500, description="Most alerts to return")]


def _rule_id(rule_id: str) -> str:
    if not RULE_ID_RE.fullmatch(rule_id):
        raise FieldError("rule_id", "expected up to 16 lower-case letters and digits")
    return rule_id


class RulesController(Controller):
    tags = ["rules"]
    guards = [require_scope]
    security = SECURED

    @get(routes.RULES, name="rules:list", operation_id="listRules", responses=errors(401, 404))
    async def list_rules(self, name: str, rules: RuleService) -> RulesOut:
        """The source's rules with their state, and what the live engines can decide."""
        return await rules.list(name)

    @post(
        routes.RULES,
        name="rules:add",
        operation_id="addRule",
        status_code=HTTP_201_CREATED,
        opt={"scope": CONTROL},
        responses=errors(401, *CHANGES, 404, 413, 422),
    )
    async def add_rule(self, name: str, data: RuleIn, rules: RuleService) -> RuleOut:
        """Add a rule; 422 names what the CPU engine can decide when it cannot decide this."""
        return await rules.add(name, data)

    @put(
        routes.RULE,
        name="rules:edit",
        operation_id="editRule",
        opt={"scope": CONTROL},
        responses=errors(401, *CHANGES, 404, 413, 422),
    )
    async def edit_rule(self, name: str, rule_id: str, data: RuleIn, rules: RuleService) -> RuleOut:
        """Replace a rule (mute it with `muted: true`); a muted or changed rule starts afresh."""
        return await rules.update(name, _rule_id(rule_id), data)

    @delete(
        routes.RULE,
        name="rules:remove",
        operation_id="removeRule",
        status_code=HTTP_204_NO_CONTENT,
        opt={"scope": CONTROL},
        responses=errors(401, *CHANGES, 404, 422),
    )
    async def remove_rule(self, name: str, rule_id: str, rules: RuleService) -> None:
        """Remove a rule and its state (its alerts stay in the alerts stream)."""
        await rules.delete(name, _rule_id(rule_id))

    @get(
        routes.ALERTS,
        name="rules:alerts",
        operation_id="listAlerts",
        responses=errors(401, 404, 422),
    )
    async def alerts(self, name: str, rules: RuleService, limit: Limit = 50) -> AlertsOut:
        """The source's newest alerts (fired and cleared), newest first."""
        return await rules.alerts(name, limit)

    @get(
        routes.ALERT_SNAPSHOT,
        name="rules:snapshot",
        operation_id="getAlertSnapshot",
        opt={"token": MEDIA},
        security=MEDIA_SECURED,
        media_type="image/jpeg",
        responses=errors(401, 403, 404, 422),
    )
    async def snapshot(self, name: str, alert_id: str, rules: RuleService) -> Response[bytes]:
        """The newest JPEG of the window an alert fired or cleared on (kept ALERT_SNAPSHOT_TTL)."""
        if not ALERT_ID_RE.fullmatch(alert_id):
            raise FieldError("alert_id", "expected letters, digits, '.', '_' or '-'")
        jpeg = await rules.snapshot(name, alert_id)
        return Response(
            jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
        )
