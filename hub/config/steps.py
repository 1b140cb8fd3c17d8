"""Compile a rule's ``do:`` list into steps: registered actions with compiled arguments, and
``if/then/else`` branches. Every step keeps a stable path (``do[1].then[0]``) used in its
idempotency key, so editing one rule's later steps never re-runs earlier ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub.actions.registry import ActionSpec, catalogue, static_errors
from hub.config.checks import RULE_NAMES, check_names, record_entity, rule_fields
from hub.config.issues import ConfigIssue, from_errors, suggest
from hub.config.yamlsrc import Pos, PosDict, PosList, locate
from hub.errors import HubError
from hub.expr import Expression, Template

if TYPE_CHECKING:
    from hub.config.loader import Config
    from hub.config.rules import Rule

BRANCH_KEYS = ("if", "then", "else")


@dataclass
class ActionStep:
    name: str
    spec: ActionSpec
    raw: Any
    args: Any  # the raw arguments with every string compiled to a Template
    pos: Pos
    path: str

    @property
    def marketing(self) -> bool:
        return self.spec.marketing


@dataclass
class BranchStep:
    cond: Expression
    then: list[Step]
    else_: list[Step] = field(default_factory=list)
    pos: Pos | None = None
    path: str = ""

    @property
    def marketing(self) -> bool:
        return any(s.marketing for s in (*self.then, *self.else_))


Step = ActionStep | BranchStep


def walk(steps: list[Step]) -> list[ActionStep]:
    """Every action step, depth first, in document order."""
    out: list[ActionStep] = []
    for s in steps:
        if isinstance(s, ActionStep):
            out.append(s)
        else:
            out.extend(walk(s.then))
            out.extend(walk(s.else_))
    return out


def compile_steps(
    raw: Any,
    pos: Pos | None,
    cfg: Config,
    model: Rule | None,
    context: str,
    issues: list[ConfigIssue],
    path: str = "do",
) -> list[Step] | None:
    """Steps for ``raw``, or None when anything is wrong (the issues say what)."""
    if raw is None:
        return None  # pydantic already reported the missing list
    if not isinstance(raw, PosList):
        issues.append(ConfigIssue.at(pos, f"expected a list of actions, got {raw!r}", context=context, path=path))
        return None
    fields = rule_fields(model, cfg)
    before = len(issues)
    steps: list[Step] = []
    for i, item in enumerate(raw):
        here = f"{path}[{i}]"
        ipos = raw.ipos[i]
        step = _compile_item(item, ipos, here, cfg, model, fields, context, issues)
        if step is not None:
            steps.append(step)
    return steps if len(issues) == before else None


def _compile_item(
    item: Any,
    ipos: Pos,
    here: str,
    cfg: Config,
    model: Rule | None,
    fields: list[str] | None,
    context: str,
    issues: list[ConfigIssue],
) -> Step | None:
    actions = catalogue()
    if not isinstance(item, PosDict) or not item:
        issues.append(
            ConfigIssue.at(ipos, f"expected '- <action>: {{arguments}}', got {item!r}", context=context, path=here)
        )
        return None
    if "if" in item:
        return _compile_branch(item, here, cfg, model, fields, context, issues)
    if len(item) != 1:
        names = ", ".join(repr(k) for k in item)
        issues.append(ConfigIssue.at(ipos, f"one action per item, got {names}", context=context, path=here))
        return None
    name = next(iter(item))
    npos = item.kpos[name]
    spec = actions.get(name)
    if spec is None:
        issues.append(
            ConfigIssue.at(npos, f"unknown action {name!r}{suggest(name, actions)}", context=context, path=here)
        )
        return None
    args = item[name] if item[name] is not None else PosDict()
    apos = item.vpos[name]
    if not isinstance(args, dict):
        issues.append(
            ConfigIssue.at(apos, f"arguments of {name!r} must be a mapping, got {args!r}", context=context, path=here)
        )
        return None
    errors = static_errors(spec, args)
    if errors:
        issues.extend(from_errors(errors, root=args, model=spec.args, context=context, base_path=(here,)))
        return None
    problems: list[tuple[str, str]] = []
    if spec.check is not None and model is not None:  # without a valid rule the entity is unknown
        problems = spec.check(args, cfg, record_entity(model, cfg))
        for sub, message in problems:
            where = locate(args, tuple(sub.split("."))) if sub else npos
            issues.append(
                ConfigIssue.at(where or npos, message, context=context, path=f"{here}.{sub}" if sub else here)
            )
    compiled = _compile_args(args, apos, here, fields, context, issues)
    if compiled is None or problems:
        return None
    return ActionStep(name=name, spec=spec, raw=args, args=compiled, pos=npos, path=here)


def _compile_branch(
    item: PosDict,
    here: str,
    cfg: Config,
    model: Rule | None,
    fields: list[str] | None,
    context: str,
    issues: list[ConfigIssue],
) -> Step | None:
    before = len(issues)
    for key in item:
        if key not in BRANCH_KEYS:
            issues.append(
                ConfigIssue.at(
                    item.kpos[key],
                    f"unknown key {key!r} in a branch{suggest(key, BRANCH_KEYS)}; expected if, then, else",
                    context=context,
                    path=here,
                )
            )
    cond: Expression | None = None
    try:
        cond = Expression(item["if"] if not isinstance(item["if"], bool) else str(item["if"]).lower())
    except HubError as exc:
        issues.append(ConfigIssue.at(item.vpos["if"], str(exc), context=context, path=f"{here}.if"))
    if cond is not None:
        issues.extend(check_names(cond, RULE_NAMES, fields, item.vpos["if"], context, f"{here}.if"))
    if "then" not in item:
        issues.append(
            ConfigIssue.at(item.kpos["if"], "a branch needs 'then:' (a list of actions)", context=context, path=here)
        )
        return None
    then = compile_steps(item["then"], item.vpos["then"], cfg, model, context, issues, f"{here}.then")
    else_ = (
        compile_steps(item["else"], item.vpos["else"], cfg, model, context, issues, f"{here}.else")
        if "else" in item
        else []
    )
    if len(issues) > before or cond is None or then is None or else_ is None:
        return None
    return BranchStep(cond=cond, then=then, else_=else_, pos=item.kpos["if"], path=here)


def _compile_args(
    value: Any, pos: Pos | None, path: str, fields: list[str] | None, context: str, issues: list[ConfigIssue]
) -> Any:
    """Compile every string into a Template, checking its names; None on any problem."""
    ok = True

    def go(v: Any, p: Pos | None, where: str) -> Any:
        nonlocal ok
        if isinstance(v, str):
            try:
                t = Template(v)
            except HubError as exc:
                issues.append(ConfigIssue.at(p, str(exc), context=context, path=where))
                ok = False
                return None
            found = check_names(t, RULE_NAMES, fields, p, context, where)
            if found:
                issues.extend(found)
                ok = False
            return t
        if isinstance(v, dict):
            vpos = getattr(v, "vpos", {})
            return {k: go(x, vpos.get(k, p), f"{where}.{k}") for k, x in v.items()}
        if isinstance(v, list):
            ipos = getattr(v, "ipos", [])
            return [go(x, ipos[i] if i < len(ipos) else p, f"{where}[{i}]") for i, x in enumerate(v)]
        return v

    out = go(value, pos, path)
    return out if ok else None
