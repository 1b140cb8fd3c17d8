"""Deciding what a rule does with one record: trigger match, condition, branches, rendered args.

Pure functions over a compiled rule and plain data: the worker uses them to act, ``hub rules
test`` to print the plan, ``hub replay`` to compare configs. An expression that fails raises
:class:`ExpressionError` for this rule only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from hub.config.rules import ChangedTrigger, CreatedTrigger, DeletedTrigger, UpdatedTrigger
from hub.config.steps import ActionStep, BranchStep, Step
from hub.errors import ExpressionError
from hub.expr import render_value
from hub.mapping.values import to_json

if TYPE_CHECKING:
    from hub.config.loader import CompiledRule


@dataclass
class RecordEvent:
    """A canonical change to one record, after sync: what record triggers match against."""

    kind: str  # created | updated | deleted
    entity: str
    key: str  # the record's identity value (or system id) — stable across systems
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # field → (old, new)
    occurrence: str = ""  # a stable id of this change (for idempotency keys)


@dataclass
class PlannedAction:
    step: str
    action: str
    args: dict[str, Any]
    marketing: bool
    parsed: Any = None  # the validated argument model handed to the action

    def as_json(self) -> dict[str, Any]:
        return {"step": self.step, "action": self.action, "args": to_json(self.args)}


def trigger_matches(rule: CompiledRule, ev: RecordEvent) -> bool:
    """Whether a record change ``ev`` is this rule's trigger."""
    w = rule.model.when
    if rule.model.entity != ev.entity:
        return False
    if isinstance(w, CreatedTrigger):
        return ev.kind == "created"
    if isinstance(w, DeletedTrigger):
        return ev.kind == "deleted"
    if isinstance(w, UpdatedTrigger):
        if ev.kind != "updated" or not ev.changes:
            return False
        return w.fields is None or any(f in ev.changes for f in w.fields)
    if isinstance(w, ChangedTrigger):
        if ev.kind == "deleted" or w.field not in ev.changes:
            return False
        old, new = ev.changes[w.field]
        return w.matches(old, new)
    return False


def context(
    rule: CompiledRule,
    record: dict[str, Any] | None,
    event: dict[str, Any] | None = None,
    changed: list[str] | None = None,
    templates: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "record": record if record is not None else {},
        "event": event or {},
        "changed": changed or [],
        "rule": {"id": rule.id},
        "templates": templates or {},
    }


def condition(rule: CompiledRule, ctx: dict[str, Any]) -> bool:
    cond = rule.model.if_
    if cond is None:
        return True
    try:
        return bool(cond(ctx))
    except ExpressionError as exc:
        raise ExpressionError(f"rule {rule.id!r}: if: {exc}") from None


def plan(rule: CompiledRule, ctx: dict[str, Any]) -> list[PlannedAction]:
    """The actions this rule would take, branches resolved and arguments rendered and validated."""
    out: list[PlannedAction] = []
    _plan(rule, rule.steps, ctx, out)
    return out


def _plan(rule: CompiledRule, steps: list[Step], ctx: dict[str, Any], out: list[PlannedAction]) -> None:
    for step in steps:
        if isinstance(step, BranchStep):
            try:
                taken = bool(step.cond(ctx))
            except ExpressionError as exc:
                raise ExpressionError(f"rule {rule.id!r}: {step.path}.if: {exc}") from None
            _plan(rule, step.then if taken else step.else_, ctx, out)
            continue
        assert isinstance(step, ActionStep)
        try:
            rendered = render_value(step.args, ctx)
        except ExpressionError as exc:
            raise ExpressionError(f"rule {rule.id!r}: {step.path} ({step.name}): {exc}") from None
        try:
            args = step.spec.args.model_validate(rendered)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ExpressionError(f"rule {rule.id!r}: {step.path} ({step.name}): {problems}") from None
        out.append(PlannedAction(step.path, step.name, args.model_dump(mode="json"), step.spec.marketing, args))
