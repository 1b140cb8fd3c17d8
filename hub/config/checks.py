"""Cross-checks pydantic cannot do alone: names that must exist elsewhere in the config.

Every reference (an entity, a field, a webhook, a budget, a variable in an expression) is checked
against what is declared, and a typo gets the nearest valid name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from hub.config.issues import ConfigIssue, suggest
from hub.config.mapping import SYSTEMS, Mapping
from hub.config.rules import (
    TRIGGER_KEYS,
    ChangedTrigger,
    CronTrigger,
    EveryTrigger,
    Rule,
    UpdatedTrigger,
    WebhookTrigger,
)
from hub.config.yamlsrc import Pos, PosDict, locate
from hub.expr import HELPERS, Expression, Template

if TYPE_CHECKING:
    from hub.config.loader import Config

# Variables a rule's expressions and templates may read.
RULE_NAMES = {"record", "event", "changed", "rule", "templates"}
# Variables a mapping's computed fields may read.
MAPPING_NAMES = {"record"}
AGGREGATE_NAMES = {"item", "record"}


def check_names(
    expr: Expression | Template,
    allowed: Iterable[str],
    fields: Iterable[str] | None,
    pos: Pos | None,
    context: str,
    path: str,
) -> list[ConfigIssue]:
    """Unknown variables and unknown ``record.<field>`` reads in one expression."""
    issues: list[ConfigIssue] = []
    known = set(allowed) | set(HELPERS)
    for name in sorted(expr.names - known):
        issues.append(
            ConfigIssue.at(
                pos, f"unknown name {name!r} in {expr.source!r}{suggest(name, known)}", context=context, path=path
            )
        )
    if fields is not None and "record" in expr.names:
        field_list = list(fields)
        for attr in expr.fields_read:
            if attr not in field_list:
                issues.append(
                    ConfigIssue.at(
                        pos,
                        f"unknown field {attr!r} in {expr.source!r}{suggest(attr, field_list)}",
                        context=context,
                        path=path,
                    )
                )
    return issues


def check_mapping(model: Mapping, data: PosDict, mappings: dict[str, Mapping], file: str) -> list[ConfigIssue]:
    ctx = f"entity {model.entity!r}"
    fields = model.all_fields()
    names = list(fields)
    out: list[ConfigIssue] = []

    def at(path: tuple[Any, ...], message: str, *, key: bool = False) -> None:
        from hub.config.issues import format_path

        out.append(
            ConfigIssue.at(
                locate(data, path, key=key), message, context=ctx, path=format_path(path[:-1] if key else path)
            )
        )

    for i, ident in enumerate(model.identity):
        if ident not in fields:
            at(("identity", i), f"unknown field {ident!r}{suggest(ident, names)}")
        elif fields[ident].computed:
            at(("identity", i), f"identity field {ident!r} cannot be computed")
    present = [name for name, _ in model.systems.items()]
    owners = [*present, "hub"]
    if model.owner is not None and model.owner not in owners:
        at(
            ("owner",),
            f"unknown owner {model.owner!r}{suggest(model.owner, owners)}; expected one of {', '.join(owners)}",
        )
    for fname, fd in model.fields.items():
        if fd.owner is not None and fd.owner not in owners:
            at(
                ("fields", fname, "owner"),
                f"unknown owner {fd.owner!r}{suggest(fd.owner, owners)}; expected one of {', '.join(owners)}",
            )
        for kind in ("compute", "template"):
            expr = getattr(fd, kind)
            if expr is not None:
                for issue in check_names(
                    expr, MAPPING_NAMES, names, locate(data, ("fields", fname, kind)), ctx, f"fields.{fname}.{kind}"
                ):
                    out.append(issue)
        if fd.aggregate is not None:
            out.extend(_check_aggregate(model, fname, fd, data, mappings, ctx))
    for sysname, target in model.systems.items():
        for cname in target.fields:
            if cname not in fields:
                at(("systems", sysname, "fields", cname), f"unknown field {cname!r}{suggest(cname, names)}", key=True)
    if not present:
        at(("systems",), f"no system declared; expected at least one of {', '.join(SYSTEMS)}")
    if model.consent is not None:
        fd = fields.get(model.consent)
        if fd is None:
            at(("consent",), f"unknown field {model.consent!r}{suggest(model.consent, names)}")
        elif fd.type != "bool":
            at(("consent",), f"consent field {model.consent!r} must be a bool field, it is {fd.type!r}")
    if model.journey is not None:
        fd = fields.get(model.journey)
        if fd is None:
            at(("journey",), f"unknown field {model.journey!r}{suggest(model.journey, names)}")
        elif fd.type not in ("list", "json", "text"):
            at(("journey",), f"journey field {model.journey!r} must be a list, json or text field, it is {fd.type!r}")
    return out


def _check_aggregate(
    model: Mapping, fname: str, fd: Any, data: PosDict, mappings: dict[str, Mapping], ctx: str
) -> list[ConfigIssue]:
    agg = fd.aggregate
    out: list[ConfigIssue] = []
    base = ("fields", fname, "aggregate")

    def at(step: str, message: str) -> None:
        out.append(
            ConfigIssue.at(locate(data, (*base, step)), message, context=ctx, path=f"fields.{fname}.aggregate.{step}")
        )

    other = mappings.get(agg.entity)
    if other is None:
        at("entity", f"unknown entity {agg.entity!r}{suggest(agg.entity, mappings)}")
        return out
    ofields = other.all_fields()
    if agg.join not in ofields:
        at("join", f"entity {agg.entity!r} has no field {agg.join!r}{suggest(agg.join, ofields)}")
    if agg.field is not None and agg.field not in ofields:
        at("field", f"entity {agg.entity!r} has no field {agg.field!r}{suggest(agg.field, ofields)}")
    if agg.key is not None and agg.key not in model.all_fields():
        at("key", f"unknown field {agg.key!r}{suggest(agg.key, model.all_fields())}")
    if agg.where is not None:
        for issue in check_names(
            agg.where, AGGREGATE_NAMES, None, locate(data, (*base, "where")), ctx, f"fields.{fname}.aggregate.where"
        ):
            out.append(issue)
    return out


def check_trigger_keys(raw: PosDict, context: str) -> ConfigIssue | None:
    """A clearer message than the union's when ``when:`` has no (or several) trigger keys."""
    when = raw.get("when")
    if not isinstance(when, PosDict):
        return None
    present = [k for k in when if k in TRIGGER_KEYS]
    if len(present) == 1:
        return None
    if len(present) > 1:
        return ConfigIssue.at(
            when.kpos[present[1]], f"one trigger per rule, got {', '.join(present)}", context=context, path="when"
        )
    for key in when:
        hint = suggest(key, TRIGGER_KEYS)
        if hint:
            return ConfigIssue.at(when.kpos[key], f"unknown trigger {key!r}{hint}", context=context, path="when")
    return ConfigIssue.at(
        when.pos,
        f"a trigger needs one of: {', '.join(TRIGGER_KEYS)}; got {', '.join(when) or 'nothing'}",
        context=context,
        path="when",
    )


def check_rule_refs(raw: PosDict, model: Rule | None, cfg: Config, context: str) -> list[ConfigIssue]:
    """References from one rule's trigger, guards and condition to the rest of the config."""
    if model is None:
        return []
    out: list[ConfigIssue] = []
    when = raw.get("when")

    def at(path: tuple[Any, ...], message: str) -> None:
        from hub.config.issues import format_path

        out.append(ConfigIssue.at(locate(raw, path), message, context=context, path=format_path(path)))

    entity = model.entity
    entity_key = next(
        (k for k in ("created", "updated", "deleted", "changed") if isinstance(when, dict) and k in when), None
    )
    if entity is not None and entity not in cfg.mappings:
        where: tuple[Any, ...] = ("when", entity_key) if entity_key else ("when", "for_each", "entity")
        if entity in cfg.refused_entities:
            at(where, f"entity {entity!r} is not loaded: its mapping ({cfg.refused_entities[entity]}) has errors")
        else:
            at(where, f"unknown entity {entity!r}{suggest(entity, cfg.mappings)}")
        return out
    fields = list(cfg.mappings[entity].all_fields()) if entity else None
    w = model.when
    if isinstance(w, ChangedTrigger) and fields is not None and w.field not in fields:
        at(("when", "field"), f"entity {entity!r} has no field {w.field!r}{suggest(w.field, fields)}")
    if isinstance(w, UpdatedTrigger) and fields is not None:
        for i, f in enumerate(w.fields or []):
            if f not in fields:
                at(("when", "fields", i), f"entity {entity!r} has no field {f!r}{suggest(f, fields)}")
    if isinstance(w, WebhookTrigger):
        hooks = cfg.rules_file.webhooks
        if w.webhook not in hooks:
            at(
                ("when", "webhook"),
                f"unknown webhook {w.webhook!r}{suggest(w.webhook, hooks)}; declare it under 'webhooks:'",
            )
        elif hooks[w.webhook].entity is not None:
            entity = hooks[w.webhook].entity
            fields = list(cfg.mappings[entity].all_fields()) if entity in cfg.mappings else None
    if isinstance(w, CronTrigger | EveryTrigger) and w.for_each is not None and w.for_each.where is not None:
        out.extend(
            check_names(
                w.for_each.where,
                RULE_NAMES,
                fields,
                locate(raw, ("when", "for_each", "where")),
                context,
                "when.for_each.where",
            )
        )
    if model.wait is not None and isinstance(w, CronTrigger | EveryTrigger):
        at(("wait",), "'wait' applies to record and webhook triggers, not to schedules")
    if model.budget is not None and model.budget not in cfg.rules_file.budgets:
        at(
            ("budget",),
            f"unknown budget {model.budget!r}{suggest(model.budget, cfg.rules_file.budgets)}; "
            "declare it under 'budgets:'",
        )
    if model.if_ is not None:
        out.extend(check_names(model.if_, RULE_NAMES, fields, locate(raw, ("if",)), context, "if"))
    return out


def record_entity(model: Rule | None, cfg: Config) -> str | None:
    """The entity of the record a rule acts on (a webhook's declared entity for webhook rules)."""
    if model is None:
        return None
    if isinstance(model.when, WebhookTrigger):
        hook = cfg.rules_file.webhooks.get(model.when.webhook)
        return hook.entity if hook else None
    return model.entity


def rule_fields(model: Rule | None, cfg: Config) -> list[str] | None:
    """The fields ``record`` has in this rule's expressions (None when there is no record)."""
    entity = record_entity(model, cfg)
    if entity is None or entity not in cfg.mappings:
        return None
    return list(cfg.mappings[entity].all_fields())
