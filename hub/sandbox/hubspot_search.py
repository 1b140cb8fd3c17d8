"""``POST /crm/v3/objects/{type}/search``: filter groups, operators, sorts, a free-text query and
offset paging, within HubSpot's limits (5 groups, 10 filters a group, 25 in all, 200 a page,
10,000 results a query).

Values compare by the property's type: numbers as numbers, dates and datetimes as epoch
milliseconds (filters may give epoch ms or ISO 8601), strings case-insensitively. As HubSpot
documents, ``IN`` on string properties expects lowercase values.
"""

from __future__ import annotations

import fnmatch
import re
from typing import TYPE_CHECKING, Any

from flask import Flask, Response

from hub.sandbox.hubspot_objects import all_props, render, store, wanted
from hub.sandbox.hubspot_schema import ApiError, ObjectType, resolve_type, to_ms

if TYPE_CHECKING:
    from hub.sandbox.hubspot import HubSpotStandIn

MAX_GROUPS = 5
MAX_FILTERS_PER_GROUP = 10
MAX_FILTERS = 25
MAX_LIMIT = 200
OPERATORS = {"EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY",
             "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"}  # fmt: skip


def _typed(spec: dict[str, Any], raw: Any) -> Any:
    """A comparable form of a stored or filter value for the property ``spec``."""
    if raw is None:
        return None
    if spec["type"] == "number":
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ApiError(400, f"{raw!r} is not a valid number for property {spec['name']}") from None
    if spec["type"] in ("date", "datetime"):
        ms = to_ms(raw)
        if ms is None:
            raise ApiError(400, f"{raw!r} is not a valid date (epoch milliseconds or ISO 8601) for {spec['name']}")
        return ms
    return str(raw).lower()


def _tokens(text: str) -> set[str]:
    low = text.lower()
    return {t for t in re.split(r"[\s,;]+", low) if t} | {t for t in re.split(r"[^\w]+", low) if t}


def _match(spec: dict[str, Any], stored: str | None, f: dict[str, Any]) -> bool:
    op = f["operator"]
    if op == "HAS_PROPERTY":
        return stored is not None
    if op == "NOT_HAS_PROPERTY":
        return stored is None
    if op in ("IN", "NOT_IN"):
        values = f.get("values")
        if not isinstance(values, list):
            raise ApiError(400, f"{op} on {spec['name']} needs a values list")
        if spec["type"] in ("string",) and stored is not None:
            found = stored.lower() in [str(v) for v in values]  # HubSpot: lowercase values for strings
        else:
            found = stored is not None and _typed(spec, stored) in [_typed(spec, v) for v in values]
        return found if op == "IN" else not found
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        pattern = str(f.get("value", "")).lower()
        toks = _tokens(stored or "") | ({stored.lower()} if stored else set())
        found = any(fnmatch.fnmatchcase(t, pattern) for t in toks)
        return found if op == "CONTAINS_TOKEN" else not found
    if "value" not in f and op != "BETWEEN":
        raise ApiError(400, f"{op} on {spec['name']} needs a value")
    if op == "NEQ":
        return stored is None or _typed(spec, stored) != _typed(spec, f["value"])
    if stored is None:
        return False
    have = _typed(spec, stored)
    if op == "EQ":
        return bool(have == _typed(spec, f["value"]))
    if op == "BETWEEN":
        low, high = _typed(spec, f.get("value")), _typed(spec, f.get("highValue"))
        if low is None or high is None:
            raise ApiError(400, f"BETWEEN on {spec['name']} needs value and highValue")
        return bool(low <= have <= high)
    want = _typed(spec, f["value"])
    return bool({"LT": have < want, "LTE": have <= want, "GT": have > want, "GTE": have >= want}[op])


def _checked_groups(data: dict[str, Any], defs: dict[str, dict[str, Any]], ot: ObjectType) -> list[list[dict]]:
    groups = data.get("filterGroups") or []
    if not isinstance(groups, list):
        raise ApiError(400, "Invalid input JSON: filterGroups must be a list")
    if len(groups) > MAX_GROUPS:
        raise ApiError(400, f"Too many filter groups: {len(groups)}; the maximum is {MAX_GROUPS}")
    out = []
    for group in groups:
        filters = group.get("filters") if isinstance(group, dict) else None
        if not isinstance(filters, list):
            raise ApiError(400, "Invalid input JSON: each filter group needs a filters list")
        if len(filters) > MAX_FILTERS_PER_GROUP:
            raise ApiError(400, f"Too many filters in a group: {len(filters)}; the maximum is {MAX_FILTERS_PER_GROUP}")
        for f in filters:
            if not isinstance(f, dict) or f.get("operator") not in OPERATORS:
                raise ApiError(
                    400,
                    f"Unknown filter operator {f.get('operator') if isinstance(f, dict) else f!r}; "
                    f"known: {sorted(OPERATORS)}",
                )
            if f.get("propertyName") not in defs:
                raise ApiError(400, f"Unable to find property {f.get('propertyName')!r} of {ot.name} to filter on")
        out.append(filters)
    total = sum(len(g) for g in out)
    if total > MAX_FILTERS:
        raise ApiError(400, f"Too many filters: {total}; the maximum across all groups is {MAX_FILTERS}")
    return out


def _sort_key(data: dict[str, Any], defs: dict[str, dict[str, Any]]) -> tuple[str | None, bool]:
    sorts = data.get("sorts") or []
    if not sorts:
        return None, False
    first = sorts[0]
    if isinstance(first, str):
        name, desc = first.lstrip("-"), first.startswith("-")
    elif isinstance(first, dict):
        name, desc = str(first.get("propertyName", "")), first.get("direction", "ASCENDING") == "DESCENDING"
    else:
        raise ApiError(400, f"Invalid sort {first!r}")
    if name not in defs:
        raise ApiError(400, f"Unable to find property {name!r} to sort on")
    return name, desc


def search(hs: HubSpotStandIn, ot: ObjectType, data: dict[str, Any]) -> dict[str, Any]:
    defs = all_props(hs, ot.name)
    limit = data.get("limit", 10)
    if not isinstance(limit, int) or not 0 < limit <= MAX_LIMIT:
        raise ApiError(400, f"limit must be between 1 and {MAX_LIMIT}, got {limit!r}")
    try:
        offset = int(data.get("after") or 0)
    except (TypeError, ValueError):
        raise ApiError(400, f"after must be a numeric paging cursor, got {data.get('after')!r}") from None
    if offset >= hs.search_max_results:
        raise ApiError(
            400,
            f"Search results are limited to {hs.search_max_results} per query; "
            f"after={offset} is past that. Narrow the query (for example by date) instead",
        )
    groups = _checked_groups(data, defs, ot)
    sort_by, desc = _sort_key(data, defs)
    query = str(data.get("query") or "").strip().lower()
    hits = []
    for rec in store(hs, ot.name).values():
        if rec["archived"]:
            continue
        props = rec["properties"]
        if groups and not any(all(_match(defs[f["propertyName"]], props.get(f["propertyName"]), f) for f in g)
                              for g in groups):  # fmt: skip
            continue
        if query and not any(query in str(props.get(p) or "").lower() for p in ot.searchable):
            continue
        hits.append(rec)
    hits.sort(key=lambda r: int(r["id"]))
    if sort_by is not None:
        present = [r for r in hits if r["properties"].get(sort_by) is not None]
        absent = [r for r in hits if r["properties"].get(sort_by) is None]
        present.sort(key=lambda r: _typed(defs[sort_by], r["properties"][sort_by]), reverse=desc)
        hits = present + absent
    page = hits[offset : offset + limit]
    props_wanted = wanted(data.get("properties"))
    body: dict[str, Any] = {"total": len(hits), "results": [render(hs, ot, r, props_wanted) for r in page]}
    if offset + limit < len(hits):
        body["paging"] = {"next": {"after": str(offset + limit)}}
    return body


def register(hs: HubSpotStandIn, app: Flask) -> None:
    def do_search(otype: str) -> Response:
        ot = resolve_type(otype)
        data = hs.body()
        with hs.lock:
            return hs.json(search(hs, ot, data))

    app.add_url_rule("/crm/v3/objects/<otype>/search", "hs_search", do_search, methods=["POST"])
