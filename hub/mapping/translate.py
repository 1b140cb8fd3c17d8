"""Translate records between a system's fields and the canonical entity, per the mapping.

Reading keeps going past a bad value (it becomes None and a problem is reported) so one
malformed phone number never stops a sync; writing encodes each value the way its system
expects (HubSpot wants strings, Airtable ISO dates, Firestore native timestamps...).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

from connectors.base import Record
from hub.config.mapping import FieldDef, Mapping
from hub.mapping.values import ValueProblem, coerce, coercer, to_json

_MISSING = object()


@dataclass
class Problem:
    field: str
    system: str
    message: str

    def __str__(self) -> str:
        return f"{self.system}: field {self.field!r}: {self.message}"


@dataclass
class Decoded:
    values: dict[str, Any]
    problems: list[Problem] = field(default_factory=list)


def get_path(data: dict[str, Any], path: str) -> Any:
    """``merge_fields.FNAME`` → data["merge_fields"]["FNAME"]; missing → ``_MISSING``."""
    if path in data:
        return data[path]
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _iso_dt(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def map_value(table: dict[str, Any], value: Any) -> Any:
    """Look ``value`` up in an enum map whose YAML keys may have been true/false/numbers."""
    if value in table:
        return table[value]
    key = str(value).lower() if isinstance(value, bool) else str(value)
    for k, v in table.items():
        if str(k).lower() == key:
            return v
    return value


def encode(system: str, fd: FieldDef, value: Any) -> Any:
    """A canonical value as ``system`` stores it."""
    if system == "hubspot":
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, datetime):
            return _iso_dt(value)
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
            return ";".join(str(v) for v in value)  # multiple checkboxes
        if isinstance(value, list | dict):
            return json.dumps(to_json(value), ensure_ascii=False, sort_keys=True)
        return str(value)
    if system == "firestore":
        if isinstance(value, datetime):
            return value.astimezone(UTC)
        if isinstance(value, date):
            return value.isoformat()
        return value
    # airtable, mailchimp: JSON values with ISO dates
    if isinstance(value, datetime):
        return _iso_dt(value)
    if isinstance(value, date):
        return value.isoformat()
    if system == "mailchimp":
        if value is None:
            return ""
        if isinstance(value, bool):
            return "yes" if value else "no"
    if fd.type in ("json", "list") and not isinstance(value, str) and value is not None:
        return json.dumps(to_json(value), ensure_ascii=False, sort_keys=True)  # long text holding JSON
    return value


class _Read(NamedTuple):
    """How to read one canonical field from a system record (built once per mapping and system)."""

    name: str
    path: str
    nested: bool
    convert: Callable[[Any], Any]
    empty: Any  # the value of an empty cell: the default, False for Airtable checkboxes, or None
    reverse: dict[str, Any] | None
    is_bool: bool
    is_text: bool


def _plan(mapping: Mapping, system: str, region: str | None) -> list[_Read]:
    """How to read each field ``system`` maps, built once per mapping (kept on the mapping itself: a
    cache keyed by ``id(mapping)`` could hand a new mapping the plan of a collected one)."""
    return mapping.memo(f"_memo_read_plan:{system}:{region}", lambda: _build_plan(mapping, system, region))


def _build_plan(mapping: Mapping, system: str, region: str | None) -> list[_Read]:
    target = getattr(mapping.systems, system)
    fields = mapping.all_fields()
    plan = []
    for cname, sf in target.fields.items():
        fd = fields[cname]
        if fd.default is not None:
            empty = coerce(fd, fd.default, region=region)
        else:
            # Empty is empty everywhere: Airtable leaves the cell out, HubSpot sends "" or null.
            empty = False if (fd.type == "bool" and system == "airtable") else None
        reverse = {str(v): k for k, v in sf.map.items()} if sf.map else None
        plan.append(
            _Read(
                cname,
                sf.field,
                "." in sf.field,
                coercer(fd, region),
                empty,
                reverse,
                fd.type == "bool",
                fd.type in ("string", "text"),
            )
        )
    return plan


def from_system(mapping: Mapping, system: str, record: Record, *, region: str | None = None) -> Decoded:
    """Canonical values of the fields ``system`` maps for ``mapping``, plus ``<system>_id``."""
    data = record.fields
    out: dict[str, Any] = {f"{system}_id": record.id}
    problems: list[Problem] = []
    for name, path, nested, convert, empty, reverse, is_bool, is_text in _plan(mapping, system, region):
        raw = get_path(data, path) if nested else data.get(path, _MISSING)
        if raw is _MISSING or raw is None or raw == "" or (not is_text and isinstance(raw, str) and not raw.strip()):
            out[name] = empty
            continue
        if reverse is not None:
            raw = reverse.get(str(raw), raw)
            if is_bool and isinstance(raw, str) and raw.lower() in ("true", "false"):
                raw = raw.lower() == "true"
        try:
            out[name] = convert(raw)
        except ValueProblem as exc:
            out[name] = None
            problems.append(Problem(name, system, str(exc)))
    return Decoded(out, problems)


def to_system(mapping: Mapping, system: str, values: dict[str, Any], *, only: set[str] | None = None) -> dict[str, Any]:
    """System fields for the canonical ``values`` (restricted to ``only`` if given)."""
    target = getattr(mapping.systems, system)
    fields = mapping.all_fields()
    out: dict[str, Any] = {}
    for cname, sf in target.fields.items():
        if sf.readonly or cname not in values or (only is not None and cname not in only):
            continue
        if cname == f"{system}_id":
            continue  # a system's own id is not a field it stores
        value = values[cname]
        if sf.map and value is not None:
            value = map_value(sf.map, value)
        set_path(out, sf.field, encode(system, fields[cname], value))
    return out


def system_field(mapping: Mapping, system: str, cname: str) -> str | None:
    target = getattr(mapping.systems, system, None)
    if target is None or cname not in target.fields:
        return None
    return str(target.fields[cname].field)


def normalize(mapping: Mapping, values: dict[str, Any], *, region: str | None = None) -> Decoded:
    """Canonical typing of hand-written values (dry runs, CSV imports, action arguments)."""
    fields = mapping.all_fields()
    out: dict[str, Any] = {}
    problems: list[Problem] = []
    for key, raw in values.items():
        fd = fields.get(key)
        if fd is None:
            problems.append(Problem(key, "hub", f"entity {mapping.entity!r} has no field {key!r}"))
            continue
        try:
            out[key] = coerce(fd, raw, region=region)
        except ValueProblem as exc:
            problems.append(Problem(key, "hub", str(exc)))
    return Decoded(out, problems)


def revive(mapping: Mapping, values: dict[str, Any]) -> dict[str, Any]:
    """Canonical values back from the hub's own JSON form (job arguments, waits): dates parsed from
    their ISO text, the rest as is. They were checked when first read; :func:`normalize` would check
    them again, parsing every phone number a second time. Keys the entity lacks are left out."""
    fields = mapping.all_fields()
    out: dict[str, Any] = {}
    for key, raw in values.items():
        fd = fields.get(key)
        if fd is None:
            continue
        if raw is None or fd.type not in ("date", "datetime"):
            out[key] = raw
            continue
        try:
            revived = _iso_date(fd.type, raw)
        except ValueError:
            revived = None
        if revived is None:
            try:
                revived = coerce(fd, raw)  # a datetime object, epoch milliseconds, a naive time
            except ValueProblem:
                continue
        out[key] = revived
    return out


def _iso_date(kind: str, raw: Any) -> date | datetime | None:
    if not isinstance(raw, str):
        return None
    if kind == "date":
        return date.fromisoformat(raw)
    dt = datetime.fromisoformat(raw)
    return dt if dt.tzinfo is not None else None


def complete(mapping: Mapping, values: dict[str, Any]) -> dict[str, Any]:
    """Every field of the entity present: missing ones take their default (or None), so rule
    expressions can test ``record.x is none`` instead of failing on an unknown key."""
    defaults = mapping.memo("_memo_defaults", lambda: {name: fd.default for name, fd in mapping.all_fields().items()})
    return {**defaults, **values}
