"""What a mapping's computed fields and aggregates read, looked up once per loaded config.

Sync asks for every record it applies (compute inline? recompute which parents?), so these are
memoised on the mapping and kept apart from :mod:`hub.engine.compute`, which runs the
recomputation and imports sync.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hub.config.mapping import Mapping
from hub.mapping.translate import normalize
from hub.mapping.values import to_json


def computed_names(mapping: Mapping) -> tuple[str, ...]:
    return mapping.memo("_memo_computed", lambda: tuple(n for n, fd in mapping.fields.items() if fd.computed))


def own_computed_names(mapping: Mapping) -> tuple[str, ...]:
    """Computed from the record itself (expressions, templates), not from related records."""
    return mapping.memo(
        "_memo_own_computed",
        lambda: tuple(n for n, fd in mapping.fields.items() if fd.compute is not None or fd.template is not None),
    )


def computed_inputs(mapping: Mapping) -> frozenset[str]:
    """Fields the record's own computed fields read (a change elsewhere needs no recompute)."""

    def build() -> frozenset[str]:
        out: set[str] = set()
        for fd in mapping.fields.values():
            for expr in (fd.compute, fd.template):
                if expr is not None:
                    out.update(expr.fields_read)
        return frozenset(out)

    return mapping.memo("_memo_computed_inputs", build)


def inline_computable(mapping: Mapping) -> bool:
    """Whether the record's own computed fields can be computed from one system's read of it: some
    exist and none of their inputs is an aggregate (which needs the related records)."""
    return mapping.memo(
        "_memo_inline",
        lambda: (
            bool(own_computed_names(mapping))
            and not any(
                mapping.fields[n].aggregate is not None for n in computed_inputs(mapping) if n in mapping.fields
            )
        ),
    )


def parents_of(cfg: Any, entity: str, values: dict[str, Any]) -> dict[str, set[str]]:
    """Records whose aggregates read ``entity``: {parent entity: {parent keys}} from the join values."""
    out: dict[str, set[str]] = defaultdict(set)
    for pname, pmap, join, key_field in _readers(cfg, entity):
        if values.get(join) in (None, ""):
            continue
        typed = normalize(pmap, {key_field: values[join]}).values
        if key_field in typed:
            out[pname].add(f"{key_field}:{to_json(typed[key_field])}")
    return out


def _readers(cfg: Any, entity: str) -> tuple[tuple[str, Mapping, str, str], ...]:
    """The aggregates that read ``entity`` (parent, its mapping, join field, parent key field), found
    once per loaded config: every synced record asks."""

    def build() -> tuple[tuple[str, Mapping, str, str], ...]:
        out = []
        for pname, pmap in cfg.mappings.items():
            for fd in pmap.fields.values():
                agg = fd.aggregate
                if agg is None or agg.entity != entity:
                    continue
                key_field = agg.key or pmap.identity[0]
                if key_field == pmap.identity[0]:  # other joins wait for the scan
                    out.append((pname, pmap, agg.join, key_field))
        return tuple(out)

    mapping = cfg.mappings.get(entity)
    return build() if mapping is None else mapping.memo("_memo_readers", build)
