"""Assembling the canonical record rules see: fields from every system it lives in, plus the
computed fields (expressions, templates, aggregates over related records).

Only the systems holding fields the rules read are fetched; aggregates are computed live only when
no system already stores them.
"""

from __future__ import annotations

from typing import Any

from hub.config.loader import Config
from hub.config.mapping import FieldDef, Mapping
from hub.config.rules import CronTrigger, EveryTrigger
from hub.config.steps import walk
from hub.engine.entities import collection, record_key
from hub.engine.state import RecordState
from hub.errors import ExpressionError
from hub.expr import templates_in
from hub.mapping.translate import complete, from_system, normalize, system_field
from hub.runtime import Runtime

_NEEDED: dict[tuple[int, str], set[str]] = {}


def needed_fields(cfg: Config, entity: str) -> set[str]:
    """Fields of ``entity`` that rules, consent and computed fields read."""
    cache_key = (id(cfg), entity)
    if cache_key in _NEEDED:
        return _NEEDED[cache_key]
    mapping = cfg.mappings[entity]
    out: set[str] = set()
    for rule in cfg.rules.values():
        if rule.model.entity != entity:
            continue
        if rule.model.if_ is not None:
            out.update(rule.model.if_.fields_read)
        w = rule.model.when
        if isinstance(w, CronTrigger | EveryTrigger) and w.for_each and w.for_each.where:
            out.update(w.for_each.where.fields_read)
        for step in walk(rule.steps):
            for t in templates_in(step.args):
                out.update(t.fields_read)
    for name in (mapping.consent, mapping.journey, *mapping.identity):
        if name:
            out.add(name)
    # Actions address the record's contact by its email (Mailchimp): always have it at hand.
    out.update(n for n, fd in mapping.all_fields().items() if fd.type == "email")
    for fd in mapping.fields.values():
        for expr in (fd.compute, fd.template):
            if expr is not None:
                out.update(expr.fields_read)
    fields = mapping.all_fields()
    out = {f for f in out if f in fields}
    _NEEDED[cache_key] = out
    return out


def fetch_all(
    rt: Runtime,
    mapping: Mapping,
    key: str,
    *,
    only: set[str] | None = None,
    skip: str | None = None,
    base: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Typed values of the record from each system it is linked in (``only`` the fields asked for)."""
    values = dict(base or {})
    ids = RecordState(rt.redis).ids(mapping.entity, key)
    for system, target in mapping.systems.items():
        if system == skip or system not in ids:
            continue
        wanted = set(target.fields) - set(values)
        if only is not None:
            wanted &= only
        if not wanted:
            continue
        rec = rt.connector(system).get(collection(mapping, system), ids[system])
        if rec is None:
            continue
        decoded = from_system(mapping, system, rec).values
        for name in wanted:
            if name in decoded:
                values[name] = decoded[name]
        values.setdefault(f"{system}_id", rec.id)
    return values


def assemble(
    rt: Runtime, entity: str, key: str | None, values: dict[str, Any], source: str | None, *, fresh: bool = False
) -> dict[str, Any]:
    """The record for rules: ``values`` (from the source system) completed from the others."""
    cfg = rt.config
    mapping = cfg.mapping(entity)
    typed = normalize(mapping, values).values
    if key:
        missing = None if fresh else needed_fields(cfg, entity) - set(typed)
        if fresh or missing:
            typed = fetch_all(rt, mapping, key, only=missing, skip=None if fresh else source, base=typed)
    record = complete(mapping, typed)
    return with_computed(rt, mapping, record)


def with_computed(
    rt: Runtime | None,
    mapping: Mapping,
    record: dict[str, Any],
    related: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] | None = None,
) -> dict[str, Any]:
    """Fill computed fields: aggregates first (live if no system stores them; from ``related``,
    {entity: {join value: records}}, when the caller loaded them in bulk), then expressions."""
    from hub.engine.compute import aggregate

    for name, fd in mapping.fields.items():
        if fd.aggregate is not None and record.get(name) is None and rt is not None:
            groups = (related or {}).get((fd.aggregate.entity, fd.aggregate.join))
            record[name] = aggregate(rt, mapping, fd, record, groups)
    for name, fd in mapping.fields.items():
        record[name] = _computed_value(fd, record, name)
    return record


def _computed_value(fd: FieldDef, record: dict[str, Any], name: str) -> Any:
    if fd.compute is not None:
        try:
            return fd.compute({"record": record})
        except ExpressionError:
            return None
    if fd.template is not None:
        try:
            return fd.template.render({"record": record})
        except ExpressionError:
            return None
    return record.get(name)


def find_record(rt: Runtime, entity: str, field: str, value: Any) -> tuple[str | None, dict[str, Any] | None]:
    """The record of ``entity`` whose ``field`` is ``value`` (first system that has it)."""
    mapping = rt.config.mapping(entity)
    typed = normalize(mapping, {field: value}).values
    if field not in typed:
        return None, None
    for system, _ in mapping.systems.items():
        sf = system_field(mapping, system, field)
        if sf is None:
            continue
        from hub.mapping.translate import to_system

        encoded = to_system(mapping, system, typed, only={field})
        probe = encoded.get(sf.split(".")[0]) if "." in sf else encoded.get(sf)
        found = rt.connector(system).find(collection(mapping, system), sf, probe)
        if found:
            rec = found[0]
            values = from_system(mapping, system, rec).values
            key = record_key(mapping, values, system, rec.id)
            return key, assemble(rt, entity, key, values, system)
    return None, None
