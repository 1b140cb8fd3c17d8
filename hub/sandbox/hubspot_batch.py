"""Batch endpoints of CRM objects: create, read, update, upsert and archive, ≤ 100 inputs each.

A batch is validated whole before anything is written (a bad value or a duplicate email fails
the request and changes nothing); ids that do not exist give a 207 with HubSpot's
``OBJECT_NOT_FOUND`` error next to the results that worked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Flask, Response

from hub.sandbox import hubspot_assoc as assoc
from hub.sandbox.hubspot_objects import (
    archive,
    batch_response,
    check,
    check_unique,
    create,
    find_unique,
    live,
    no_duplicates,
    not_found_error,
    raise_problems,
    render,
    store,
    update,
    wanted,
)
from hub.sandbox.hubspot_schema import ApiError, ObjectType, resolve_type
from hub.sandbox.hubspot_schema import batch_inputs as inputs

if TYPE_CHECKING:
    from hub.sandbox.hubspot import HubSpotStandIn

_HISTORY_MAX = 50


def _trace(item: dict[str, Any]) -> str | None:
    trace = item.get("objectWriteTraceId")
    return None if trace is None else str(trace)


def _item(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ApiError(400, "Invalid input JSON: each input must be an object")
    return raw


def register(hs: HubSpotStandIn, app: Flask) -> None:
    base = "/crm/v3/objects/<otype>/batch"

    def batch_create(otype: str) -> Response:
        ot = resolve_type(otype)
        items = [_item(i) for i in inputs(hs.body())]
        problems: list[dict[str, Any]] = []
        with hs.lock:
            planned = [check(hs, ot, item.get("properties", {}), None, problems) for item in items]
            raise_problems(hs, problems)
            taken: dict[tuple[str, str], str] = {}
            for values in planned:
                check_unique(hs, ot, None, values, taken)
            for item in items:
                for link in item.get("associations") or []:
                    assoc.check_input(hs, ot.name, link)
            results = []
            for item, values in zip(items, planned, strict=True):
                rec = create(hs, ot, values, item.get("associations") or [])
                results.append(render(hs, ot, rec, None, written=list(values), trace=_trace(item)))
        return batch_response(hs, results, [], 201)

    def batch_read(otype: str) -> Response:
        ot = resolve_type(otype)
        data = hs.body()
        items = [_item(i) for i in inputs(data)]
        history = wanted(data.get("propertiesWithHistory"))
        if history and len(items) > _HISTORY_MAX:
            raise ApiError(
                400,
                "The maximum number of inputs supported in a batch request for property histories "
                f"is {_HISTORY_MAX}. Please reduce the number of items and try again",
            )
        props, id_prop = wanted(data.get("properties")), data.get("idProperty")
        archived = bool(data.get("archived", False))
        results, missing = [], []
        with hs.lock:
            for item in items:
                key = str(item.get("id", ""))
                if archived:
                    rec = store(hs, ot.name).get(key)
                    rec = rec if rec and rec["archived"] else None
                else:
                    rec = find_unique(hs, ot.name, id_prop, key) if id_prop else live(hs, ot.name, key)
                if rec is None:
                    missing.append(key)
                    continue
                out = render(hs, ot, rec, props)
                if history:
                    out["propertiesWithHistory"] = _history(rec, history)
                results.append(out)
        return batch_response(hs, results, [not_found_error(ot, missing)] if missing else [])

    def batch_update(otype: str) -> Response:
        ot = resolve_type(otype)
        items = [_item(i) for i in inputs(hs.body())]
        no_duplicates([str(i.get("id", "")) for i in items])
        problems: list[dict[str, Any]] = []
        with hs.lock:
            found: list[tuple[dict[str, Any], dict[str, Any], dict[str, str | None]]] = []
            missing = []
            for item in items:
                key, id_prop = str(item.get("id", "")), item.get("idProperty")
                rec = find_unique(hs, ot.name, id_prop, key) if id_prop else live(hs, ot.name, key)
                if rec is None:
                    missing.append(key)
                    continue
                found.append((item, rec, check(hs, ot, item.get("properties", {}), rec["properties"], problems)))
            raise_problems(hs, problems)
            taken: dict[tuple[str, str], str] = {}
            for _, rec, values in found:
                check_unique(hs, ot, rec["id"], values, taken)
            results = []
            for item, rec, values in found:
                update(hs, ot, rec, values)
                results.append(render(hs, ot, rec, None, written=list(values), trace=_trace(item)))
        return batch_response(hs, results, [not_found_error(ot, missing, "update")] if missing else [])

    def batch_upsert(otype: str) -> Response:
        ot = resolve_type(otype)
        items = [_item(i) for i in inputs(hs.body())]
        no_duplicates([str(i.get("id", "")) for i in items])
        problems: list[dict[str, Any]] = []
        with hs.lock:
            planned = []
            for item in items:
                id_prop = item.get("idProperty")
                if not id_prop:
                    raise ApiError(400, "idProperty is required for each input of a batch upsert")
                rec = find_unique(hs, ot.name, id_prop, str(item.get("id", "")))
                props = {**(item.get("properties") or {}), id_prop: item.get("id")}
                planned.append((item, rec, check(hs, ot, props, rec["properties"] if rec else None, problems)))
            raise_problems(hs, problems)
            taken: dict[tuple[str, str], str] = {}
            for _, rec, values in planned:
                check_unique(hs, ot, rec["id"] if rec else None, values, taken)
            results = [_upsert_one(hs, ot, item, rec, values) for item, rec, values in planned]
        return batch_response(hs, results, [])

    def batch_archive(otype: str) -> Response:
        ot = resolve_type(otype)
        items = [_item(i) for i in inputs(hs.body())]
        with hs.lock:
            for item in items:
                archive(hs, ot, str(item.get("id", "")))
        return Response(status=204)

    app.add_url_rule(base + "/create", "hs_batch_create", batch_create, methods=["POST"])
    app.add_url_rule(base + "/read", "hs_batch_read", batch_read, methods=["POST"])
    app.add_url_rule(base + "/update", "hs_batch_update", batch_update, methods=["POST"])
    app.add_url_rule(base + "/upsert", "hs_batch_upsert", batch_upsert, methods=["POST"])
    app.add_url_rule(base + "/archive", "hs_batch_archive", batch_archive, methods=["POST"])


def _upsert_one(
    hs: HubSpotStandIn,
    ot: ObjectType,
    item: dict[str, Any],
    rec: dict[str, Any] | None,
    values: dict[str, str | None],
) -> dict[str, Any]:
    is_new = rec is None
    if rec is None:
        rec = create(hs, ot, values, [])
    else:
        update(hs, ot, rec, values)
    out = render(hs, ot, rec, None, written=list(values), trace=_trace(item))
    out["new"] = is_new
    return out


def _history(rec: dict[str, Any], names: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Only the current value is kept, so a property's history is that one version."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        value = rec["properties"].get(name)
        if value is not None:
            out[name] = [{"value": value, "timestamp": rec["updatedAt"], "sourceType": "API"}]
    return out
