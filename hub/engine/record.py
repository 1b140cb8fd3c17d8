"""Assembling the canonical record rules see: fields from every system it lives in, plus the
computed fields (expressions, templates, aggregates over related records).

Only the systems holding fields the rules read are fetched; aggregates are computed live only when
no system already stores them.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from hub.config.loader import Config
from hub.config.mapping import FieldDef, Mapping
from hub.config.rules import CronTrigger, EveryTrigger
from hub.config.steps import walk
from hub.engine.entities import collection, record_key
from hub.engine.state import RecordState
from hub.errors import ExpressionError
from hub.expr import templates_in
from hub.mapping.translate import complete, from_system, normalize, revive, system_field
from hub.runtime import Runtime


def needed_fields(cfg: Config, entity: str) -> set[str]:
    """Fields of ``entity`` that rules, consent and computed fields read."""
    cache_key = f"needed_fields:{entity}"
    if cache_key in cfg.derived:
        return cfg.derived[cache_key]  # type: ignore[no-any-return]
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
    # Computed fields are computed, not fetched; an aggregate is fetched only where a system stores it.
    stored = {n for _, t in mapping.systems.items() for n in t.fields}
    out = {
        f
        for f in out
        if f in fields
        and not (fields[f].compute or fields[f].template)
        and (fields[f].aggregate is None or f in stored)
    }
    cfg.derived[cache_key] = out
    return out


class Loader:
    """Fetches the records of many keys at once: their ids in one Redis round trip, then one
    batched read per system — instead of a read per record (rules jobs, recomputes)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.ids: dict[tuple[str, str], dict[str, str]] = {}
        self.records: dict[tuple[str, str, str], Any] = {}  # (entity, system, id) → Record | None

    def prefetch(self, entity: str, wanted: list[tuple[str, set[str] | None, str | None]]) -> None:
        """``wanted``: (key, fields needed or None for all, system to skip) per record."""
        mapping = self.rt.config.mapping(entity)
        keys = [k for k, _, _ in wanted if k and (entity, k) not in self.ids]
        with self.rt.redis.pipeline(transaction=False) as pipe:
            for k in keys:
                pipe.hgetall(f"hub:r:{entity}:{k}")
            for k, raw in zip(keys, pipe.execute(), strict=True):
                self.ids[(entity, k)] = {f.decode()[3:]: v.decode() for f, v in raw.items() if f.startswith(b"id:")}
        for system, target in mapping.systems.items():
            ids = [
                self.ids[(entity, k)][system]
                for k, only, skip in wanted
                if k
                and skip != system
                and system in self.ids.get((entity, k), {})
                and (only is None or only & set(target.fields))
            ]
            ids = [i for i in dict.fromkeys(ids) if (entity, system, i) not in self.records]
            if not ids:
                continue
            got = {r.id: r for r in self.rt.connector(system).get_many(collection(mapping, system), ids)}
            for i in ids:
                self.records[(entity, system, i)] = got.get(i)

    def record(self, mapping: Mapping, system: str, record_id: str) -> Any:
        cache_key = (mapping.entity, system, record_id)
        if cache_key not in self.records:
            self.records[cache_key] = self.rt.connector(system).get(collection(mapping, system), record_id)
        return self.records[cache_key]

    def key_ids(self, entity: str, key: str) -> dict[str, str]:
        if (entity, key) not in self.ids:
            self.ids[(entity, key)] = RecordState(self.rt.redis).ids(entity, key)
        return self.ids[(entity, key)]


def fetch_all(
    rt: Runtime,
    mapping: Mapping,
    key: str,
    *,
    only: set[str] | None = None,
    skip: str | None = None,
    base: dict[str, Any] | None = None,
    loader: Loader | None = None,
) -> dict[str, Any]:
    """Typed values of the record from each system it is linked in (``only`` the fields asked for)."""
    values = dict(base or {})
    load = loader or Loader(rt)
    ids = load.key_ids(mapping.entity, key)
    for system, target in mapping.systems.items():
        if system == skip or system not in ids:
            continue
        wanted = set(target.fields) - set(values)
        if only is not None:
            wanted &= only
        if not wanted:
            continue
        rec = load.record(mapping, system, ids[system])
        if rec is None:
            continue
        decoded = from_system(mapping, system, rec).values
        for name in wanted:
            if name in decoded:
                values[name] = decoded[name]
        values.setdefault(f"{system}_id", rec.id)
    return values


def missing_fields(rt: Runtime, entity: str, values: dict[str, Any]) -> set[str]:
    """Fields rules need that the event's values do not carry (fetched from the other systems)."""
    return needed_fields(rt.config, entity) - set(values)


def assemble(
    rt: Runtime,
    entity: str,
    key: str | None,
    values: dict[str, Any],
    source: str | None,
    *,
    fresh: bool = False,
    loader: Loader | None = None,
    computed: Collection[str] = (),
) -> dict[str, Any]:
    """The record for rules: ``values`` (canonical, from the source system) completed from the others.
    ``computed``: computed fields whose values in ``values`` the sync computed from these very
    values (not computed again)."""
    cfg = rt.config
    mapping = cfg.mapping(entity)
    typed = revive(mapping, values)
    if key:
        missing = None if fresh else needed_fields(cfg, entity) - set(typed)
        if fresh or missing:
            typed = fetch_all(rt, mapping, key, only=missing, skip=None if fresh else source, base=typed, loader=loader)
    record = complete(mapping, typed)
    return with_computed(rt, mapping, record, known=computed)


def with_computed(
    rt: Runtime | None,
    mapping: Mapping,
    record: dict[str, Any],
    related: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] | None = None,
    known: Collection[str] = (),
) -> dict[str, Any]:
    """Fill computed fields: aggregates first (live if no system stores them; from ``related``,
    {entity: {join value: records}}, when the caller loaded them in bulk), then expressions
    (except those ``known`` already)."""
    aggregates, computed = _derived(mapping)
    if aggregates and rt is not None:
        from hub.engine.compute import aggregate

        for name, fd in aggregates:
            if record.get(name) is None:
                groups = (related or {}).get((fd.aggregate.entity, fd.aggregate.join))  # type: ignore[union-attr]
                record[name] = aggregate(rt, mapping, fd, record, groups)
    for name, fd in computed:
        if name not in known:
            record[name] = _computed_value(fd, record, name)
    return record


def _derived(mapping: Mapping) -> tuple[list[tuple[str, FieldDef]], list[tuple[str, FieldDef]]]:
    """The mapping's aggregate and expression fields, in order (looked up once per mapping)."""
    return mapping.memo(
        "_memo_derived",
        lambda: (
            [(n, fd) for n, fd in mapping.fields.items() if fd.aggregate is not None],
            [(n, fd) for n, fd in mapping.fields.items() if fd.compute is not None or fd.template is not None],
        ),
    )


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
