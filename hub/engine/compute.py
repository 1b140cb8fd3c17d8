"""Computed fields and aggregates, recomputed when their inputs change or on a schedule, and
written back to the systems that map them (so Airtable/HubSpot views show segments and scores).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from hub import clock
from hub.config.mapping import FieldDef, Mapping
from hub.engine.derived import computed_names
from hub.engine.entities import collection, record_key
from hub.engine.state import RecordState
from hub.engine.sync import drain, hub_call, outbox_name, tracked_fields
from hub.errors import ExpressionError
from hub.jobs import hub_job
from hub.mapping.translate import from_system, normalize, system_field, to_system
from hub.mapping.values import to_json
from hub.runtime import Runtime

log = logging.getLogger("hub.compute")
SCAN_THRESHOLD = 20  # above this many parents, load the related entity once instead of per parent


def home(mapping: Mapping) -> str:
    """The system the entity is read from for scans: its default owner if it is a system, else the first."""
    systems = [s for s, _ in mapping.systems.items()]
    return mapping.owner if mapping.owner in systems else systems[0]


def join_value(value: Any) -> str:
    return str(to_json(value))


def iterate(rt: Runtime, mapping: Mapping) -> Iterable[tuple[str, dict[str, Any]]]:
    """Every record of the entity, streamed page by page from its home system: (key, typed values)."""
    system = home(mapping)
    for rec in rt.connector(system).iterate(collection(mapping, system)):
        values = from_system(mapping, system, rec).values
        yield record_key(mapping, values, system, rec.id), values


def related_records(rt: Runtime, other: Mapping, join: str, value: Any) -> list[dict[str, Any]]:
    system = home(other)
    sf = system_field(other, system, join)
    if sf is None:
        return []
    typed = normalize(other, {join: value}).values
    probe = to_system(other, system, typed, only={join})
    found = rt.connector(system).find(collection(other, system), sf, _first_leaf(probe))
    return [from_system(other, system, r).values for r in found]


def _first_leaf(data: dict[str, Any]) -> Any:
    value: Any = next(iter(data.values())) if data else None
    while isinstance(value, dict) and value:
        value = next(iter(value.values()))
    return value


def group_related(rt: Runtime, other: Mapping, join: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for _, values in iterate(rt, other):
        if values.get(join) is not None:
            out[join_value(values[join])].append(values)
    return out


Related = dict[tuple[str, str], dict[str, list[dict[str, Any]]]]


def load_related(rt: Runtime, mapping: Mapping) -> Related:
    """Every related entity an aggregate of ``mapping`` reads, loaded once and grouped by join value:
    {(entity, join field): {join value: records}} — for scans over many parents."""
    out: Related = {}
    for fd in mapping.fields.values():
        agg = fd.aggregate
        if agg is not None and (agg.entity, agg.join) not in out:
            out[(agg.entity, agg.join)] = group_related(rt, rt.config.mapping(agg.entity), agg.join)
    return out


def apply_op(fd: FieldDef, items: list[dict[str, Any]], record: dict[str, Any] | None = None) -> Any:
    agg = fd.aggregate
    assert agg is not None
    if agg.where is not None:
        kept = []
        for item in items:
            try:
                if agg.where({"item": item, "record": record or {}}):
                    kept.append(item)
            except ExpressionError as exc:
                log.warning("aggregate where: %s", exc)
        items = kept
    if agg.op == "count":
        return len(items)
    values = [i.get(agg.field) for i in items if agg.field and i.get(agg.field) is not None]
    if agg.op == "sum":
        total = sum(values)
        return round(total, 2) if isinstance(total, float) else total
    if not values:
        return None
    if agg.op == "avg":
        return round(sum(values) / len(values), 2)
    if agg.op == "min":
        return min(values)
    return max(values)  # max, latest


def aggregate(
    rt: Runtime,
    mapping: Mapping,
    fd: FieldDef,
    record: dict[str, Any],
    related: dict[str, list[dict[str, Any]]] | None = None,
) -> Any:
    agg = fd.aggregate
    assert agg is not None
    key_value = record.get(agg.key or mapping.identity[0])
    if key_value is None:
        return 0 if agg.op == "count" else None
    if related is not None:
        items = related.get(join_value(key_value), [])
    else:
        items = related_records(rt, rt.config.mapping(agg.entity), agg.join, key_value)
    return apply_op(fd, items, record)


@hub_job
def recompute(entity: str, keys: list[str] | None = None) -> dict[str, int]:
    """Recompute ``entity``'s computed fields (for ``keys``, or every record) and write changes back."""
    from hub.engine.record import fetch_all, with_computed

    rt = Runtime.current()
    cfg = rt.config
    mapping = cfg.mappings.get(entity)
    if mapping is None:
        return {}
    names = computed_names(mapping)
    if not names:
        return {}
    related = load_related(rt, mapping) if keys is None or len(keys) > SCAN_THRESHOLD else {}
    state = RecordState(rt.redis)
    tracked = tracked_fields(cfg, entity)
    if keys is not None:
        # A join value may name a parent no system has (yet): recomputing it would create it.
        keys = [k for k in keys if state.ids(entity, k)]
    if keys is None:
        records = iterate(rt, mapping)
    else:
        from hub.engine.record import Loader

        loader = Loader(rt)
        loader.prefetch(entity, [(k, None, None) for k in keys])
        records = ((k, fetch_all(rt, mapping, k, loader=loader)) for k in keys)
    outbox = outbox_name() + ":compute"
    now_ms = int(clock.now().timestamp() * 1000)
    counts = {"records": 0, "changed": 0}
    for key, values in records:
        record = {**{n: None for n in mapping.all_fields()}, **values}
        for n in names:
            record[n] = None
        record = with_computed(rt, mapping, record, related)
        computed = {n: record.get(n) for n in names}
        applied = state.apply(
            **hub_call(entity, key, computed, kind="computed", at_ms=now_ms, tracked=tracked, outbox=outbox)
        )
        assert applied is not None
        counts["records"] += 1
        counts["changed"] += bool(applied.changed)
    drain(rt, outbox)
    return counts
