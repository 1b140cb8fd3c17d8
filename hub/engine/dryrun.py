"""``hub rules test``: what a rule would do for one record, as JSON, acting on nothing."""

from __future__ import annotations

from typing import Any

from hub import clock
from hub.config.issues import suggest
from hub.config.loader import Config
from hub.config.rules import CronTrigger, EveryTrigger
from hub.engine import evaluate
from hub.errors import ExpressionError
from hub.expr import format_duration
from hub.mapping.translate import complete, normalize
from hub.mapping.values import to_json


def _seconds(td: Any) -> str | None:
    return None if td is None else format_duration(td)


def dry_run(cfg: Config, rule_id: str, record: dict[str, Any], event: dict[str, Any] | None = None) -> dict[str, Any]:
    event = event or {}
    rule = cfg.rules.get(rule_id)
    if rule is None:
        if rule_id in cfg.refused_rules:
            problems = [str(i) for i in cfg.issues if f"rule {rule_id!r}" in i.context]
            return {"rule": rule_id, "error": "this rule was refused by the config check", "problems": problems}
        return {"rule": rule_id, "error": f"unknown rule {rule_id!r}{suggest(rule_id, cfg.rules)}"}
    model = rule.model
    out: dict[str, Any] = {
        "rule": rule.id,
        "now": to_json(clock.now()),
        "entity": model.entity,
        "trigger": model.when.model_dump(mode="json", by_alias=True, exclude_none=True),
        "condition": model.if_.source if model.if_ else None,
    }
    values = dict(record)
    if model.entity is not None:
        decoded = normalize(cfg.mapping(model.entity), record)
        values = complete(cfg.mapping(model.entity), decoded.values)
        if decoded.problems:
            out["problems"] = [str(p) for p in decoded.problems]
    out["record"] = to_json(values)
    if model.wait is not None:
        out["wait"] = {"duration": _seconds(model.wait), "due": to_json(clock.now() + model.wait)}
    out["guards"] = {
        "cooldown": _seconds(model.cooldown),
        "daily_limit": model.daily_limit,
        "budget": model.budget,
        "marketing": rule.marketing,
    }
    changes = event.get("changes") or {}
    ctx = evaluate.context(rule, values, event, changed=list(changes), templates=cfg.rules_file.templates)

    def verdict(fires: bool, reason: str, actions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        out.update(fires=fires, reason=reason, actions=actions or [])
        return out

    if not model.enabled:
        return verdict(False, "rule is disabled")
    if changes and model.entity is not None:
        ev = evaluate.RecordEvent(
            kind=str(event.get("kind", "updated")),
            entity=model.entity,
            key="dry-run",
            changes={k: (v[0], v[1]) for k, v in changes.items()},
        )
        if not evaluate.trigger_matches(rule, ev):
            return verdict(False, "the event does not match the trigger")
    try:
        w = model.when
        scan = w.for_each if isinstance(w, CronTrigger | EveryTrigger) else None
        if scan is not None and scan.where is not None and not bool(scan.where(ctx)):
            return verdict(False, "for_each.where is false for this record")
        if not evaluate.condition(rule, ctx):
            return verdict(False, "condition is false")
        if rule.marketing and model.entity is not None:
            consent_field = cfg.mapping(model.entity).consent
            if consent_field is not None and values.get(consent_field) is not True:
                return verdict(False, f"no marketing consent ({consent_field} is {values.get(consent_field)!r})")
        actions = [a.as_json() for a in evaluate.plan(rule, ctx)]
    except ExpressionError as exc:
        out["error"] = str(exc)
        return verdict(False, "an expression failed")
    return verdict(True, "condition is true" if model.if_ else "no condition", actions)
