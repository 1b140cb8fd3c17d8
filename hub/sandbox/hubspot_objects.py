"""CRM objects: basic get/list/create/update/archive and the batch endpoints.

Writes are checked the way HubSpot checks them (unknown and read-only properties, types and
options, pipeline stages, unique email) before anything is stored, so a bad batch changes nothing.
Batch results come back in no particular order, as on HubSpot: callers match them by id or by
``objectWriteTraceId``.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request

from hub.sandbox import hubspot_assoc as assoc
from hub.sandbox.hubspot_builtins import BUILTIN_PROPERTIES, PIPELINE_PROPS, READ_ONLY, REQUIRED_ON_CREATE
from hub.sandbox.hubspot_schema import (
    ApiError,
    ObjectType,
    coerce,
    iso_ms,
    problem,
    property_errors,
    resolve_type,
)

if TYPE_CHECKING:
    from hub.sandbox.hubspot import HubSpotStandIn

LIST_MAX = 100


# -- store ------------------------------------------------------------------------------------------
def store(hs: HubSpotStandIn, t: str) -> dict[str, dict[str, Any]]:
    return hs.state["objects"].setdefault(t, {})


def all_props(hs: HubSpotStandIn, t: str) -> dict[str, dict[str, Any]]:
    return {**BUILTIN_PROPERTIES[t], **hs.state["properties"].get(t, {})}


def live(hs: HubSpotStandIn, t: str, oid: str) -> dict[str, Any] | None:
    rec = store(hs, t).get(str(oid))
    return rec if rec is not None and not rec["archived"] else None


def unique_props(hs: HubSpotStandIn, t: str) -> list[str]:
    names = [n for n, d in all_props(hs, t).items() if d.get("hasUniqueValue")]
    return (["email"] if t == "contacts" else []) + names


def find_unique(hs: HubSpotStandIn, t: str, prop: str, value: str) -> dict[str, Any] | None:
    if prop not in unique_props(hs, t) and prop != "hs_object_id":
        raise ApiError(400, f"{prop} is not a unique property of {t}; idProperty must name a unique property")
    if prop == "hs_object_id":
        return live(hs, t, value)
    want = value.lower() if prop == "email" else value
    for rec in store(hs, t).values():
        got = rec["properties"].get(prop)
        if not rec["archived"] and got is not None and (got.lower() if prop == "email" else got) == want:
            return rec
    return None


# -- validation -------------------------------------------------------------------------------------
def check(
    hs: HubSpotStandIn,
    ot: ObjectType,
    values: Any,
    current: dict[str, Any] | None,
    problems: list[dict[str, Any]],
) -> dict[str, str | None]:
    """Normalised values to store; problems are collected, not raised, so a batch reports all."""
    if not isinstance(values, dict):
        raise ApiError(400, "Invalid input JSON: properties must be an object of property names to values")
    defs = all_props(hs, ot.name)
    out: dict[str, str | None] = {}
    for name, raw in values.items():
        spec = defs.get(name)
        if spec is None:
            problems.append(problem(name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'))
        elif name in READ_ONLY:
            problems.append(
                problem(name, "READ_ONLY_VALUE", f"{name} is a read only property; its value cannot be set.")
            )
        elif name in PIPELINE_PROPS.get(ot.name, ()):
            out[name] = None if raw in (None, "") else str(raw)
        else:
            value, bad = coerce(ot.name, spec, raw)
            if bad:
                problems.append(bad)
            else:
                out[name] = value
    merged = {**(current or {}), **out}
    if current is None:
        for name in REQUIRED_ON_CREATE.get(ot.name, ()):
            if not merged.get(name):
                problems.append(problem(name, "REQUIRED", f"{name} is required when creating a {ot.singular}"))
    if ot.name in PIPELINE_PROPS:
        _check_stage(hs, ot.name, merged, out, problems)
    return out


def _check_stage(
    hs: HubSpotStandIn,
    t: str,
    merged: dict[str, Any],
    out: dict[str, str | None],
    problems: list[dict[str, Any]],
) -> None:
    pipe_prop, stage_prop = PIPELINE_PROPS[t]
    pipelines = hs.state["pipelines"].get(t, {})
    if merged.get(stage_prop) and not merged.get(pipe_prop):
        default = min(pipelines.values(), key=lambda p: p["displayOrder"])["id"]
        merged[pipe_prop] = out[pipe_prop] = default
    pipe = merged.get(pipe_prop)
    if pipe is None:
        return
    if pipe not in pipelines or pipelines[pipe]["archived"]:
        problems.append(
            problem(
                pipe_prop,
                "INVALID_OPTION",
                f"{pipe} was not one of the allowed options: [{', '.join(pipelines)}]",
            )
        )
        return
    stages = [s["id"] for s in pipelines[pipe]["stages"] if not s["archived"]]
    stage = merged.get(stage_prop)
    if stage is not None and stage not in stages:
        problems.append(
            problem(
                stage_prop,
                "INVALID_OPTION",
                f"{stage} was not one of the allowed options: [{', '.join(stages)}] (stages of pipeline {pipe})",
            )
        )


def check_unique(
    hs: HubSpotStandIn,
    ot: ObjectType,
    oid: str | None,
    values: dict[str, str | None],
    taken: dict[tuple[str, str], str],
) -> None:
    """409 when a unique value (contact email, custom unique properties) belongs to another record."""
    for prop in unique_props(hs, ot.name):
        value = values.get(prop)
        if not value:
            continue
        key = (prop, value.lower() if prop == "email" else value)
        owner = taken.get(key)
        if owner is None:
            rec = find_unique(hs, ot.name, prop, value)
            owner = rec["id"] if rec else None
        if owner is not None and owner != oid:
            if prop == "email":
                raise ApiError(409, f"Contact already exists. Existing ID: {owner}", "CONFLICT")
            raise ApiError(409, f"A {ot.singular} with {prop}={value} already exists. Existing ID: {owner}", "CONFLICT")
        taken[key] = oid or "(this batch)"


def raise_problems(hs: HubSpotStandIn, problems: list[dict[str, Any]]) -> None:
    if problems:
        raise property_errors(problems, hs.portal_id)


# -- writes -----------------------------------------------------------------------------------------
def create(
    hs: HubSpotStandIn, ot: ObjectType, values: dict[str, str | None], links: list[Any], source: str = "API"
) -> dict[str, Any]:
    oid = hs.new_id()
    now = iso_ms(hs.now_ms())
    props = {k: v for k, v in values.items() if v is not None}
    props.setdefault("createdate", now)
    props.update({ot.modified: now, "hs_object_id": oid})
    rec = {
        "id": oid,
        "properties": props,
        "createdAt": props["createdate"],
        "updatedAt": now,
        "archived": False,
    }
    store(hs, ot.name)[oid] = rec
    for link in links:
        assoc.link_from_input(hs, ot.name, oid, link)
    hs.hooks.emit(ot.name, oid, "creation", source=source)
    for name, value in props.items():
        hs.hooks.emit(ot.name, oid, "propertyChange", name, value, source=source)
    hs.changed()
    return rec


def update(
    hs: HubSpotStandIn,
    ot: ObjectType,
    rec: dict[str, Any],
    values: dict[str, str | None],
    source: str = "API",
) -> list[str]:
    props = rec["properties"]
    changed = [k for k, v in values.items() if props.get(k) != v]
    if not changed:
        return []
    now = iso_ms(hs.now_ms())
    for name in changed:
        if values[name] is None:
            props.pop(name, None)
        else:
            props[name] = values[name]
    props[ot.modified] = rec["updatedAt"] = now
    for name in [*changed, ot.modified]:
        hs.hooks.emit(ot.name, rec["id"], "propertyChange", name, props.get(name) or "", source=source)
    hs.changed()
    return changed


def archive(hs: HubSpotStandIn, ot: ObjectType, oid: str) -> None:
    rec = live(hs, ot.name, oid)
    if rec is None:
        return
    rec["archived"] = True
    rec["archivedAt"] = iso_ms(hs.now_ms())
    assoc.unlink_all(hs, ot.name, oid)
    hs.hooks.emit(ot.name, oid, "deletion")
    hs.changed()


# -- rendering --------------------------------------------------------------------------------------
def wanted(raw: list[str] | None) -> list[str] | None:
    """``properties`` as HubSpot takes it: repeated and/or comma-separated; None when not given."""
    if not raw:
        return None
    return [p.strip() for item in raw for p in str(item).split(",") if p.strip()]


def render(
    hs: HubSpotStandIn,
    ot: ObjectType,
    rec: dict[str, Any],
    props: list[str] | None,
    *,
    written: list[str] | None = None,
    with_assoc: list[str] | None = None,
    trace: str | None = None,
) -> dict[str, Any]:
    defs = all_props(hs, ot.name)
    stored = rec["properties"]
    if written is not None:
        names = [n for n in ot.defaults if n in stored] + written
    elif props is None:
        names = list(ot.defaults)
    else:
        names = [*props, "createdate", ot.modified, "hs_object_id"]
    out_props = {n: stored.get(n) for n in dict.fromkeys(names) if n in defs}
    out: dict[str, Any] = {
        "id": rec["id"],
        "properties": out_props,
        "createdAt": rec["createdAt"],
        "updatedAt": rec["updatedAt"],
        "archived": rec["archived"],
    }
    if rec["archived"]:
        out["archivedAt"] = rec.get("archivedAt")
    if with_assoc:
        found = assoc.v3_view(hs, ot.name, rec["id"], with_assoc)
        if found:
            out["associations"] = found
    if trace is not None:
        out["objectWriteTraceId"] = trace
    return out


def batch_response(
    hs: HubSpotStandIn, results: list[dict[str, Any]], errors: list[dict[str, Any]], ok_status: int = 200
) -> Response:
    if hs.shuffle_batches:
        random.shuffle(results)
    now = iso_ms(hs.now_ms())
    body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}
    if errors:
        body.update(numErrors=len(errors), errors=errors)
    return hs.json(body, 207 if errors else ok_status)


def not_found_error(ot: ObjectType, ids: list[str], verb: str = "get") -> dict[str, Any]:
    return {
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "context": {"ids": ids},
        "links": {},
        "errors": [],
        "message": f"Could not {verb} some {ot.singular.upper()} objects, they may be deleted or not exist. "
        "Check that ids are valid.",
    }


def no_duplicates(ids: list[str]) -> None:
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ApiError(400, f"Duplicate IDs found in batch input: {dupes}. IDs must be unique")


# -- routes -----------------------------------------------------------------------------------------
def register(hs: HubSpotStandIn, app: Flask) -> None:
    base = "/crm/v3/objects/<otype>"

    def get_page(otype: str) -> Response:
        ot = resolve_type(otype)
        limit = _int_arg("limit", 10)
        if not 1 <= limit <= LIST_MAX:
            raise ApiError(400, f"limit must be between 1 and {LIST_MAX}, got {limit}")
        after = _int_arg("after", 0)
        archived = request.args.get("archived", "false").lower() == "true"
        props, links = (
            wanted(request.args.getlist("properties")),
            wanted(request.args.getlist("associations")),
        )
        with hs.lock:
            recs = sorted(
                (r for r in store(hs, ot.name).values() if r["archived"] == archived and int(r["id"]) >= after),
                key=lambda r: int(r["id"]),
            )
            page = [render(hs, ot, r, props, with_assoc=links) for r in recs[:limit]]
        body: dict[str, Any] = {"results": page}
        if len(recs) > limit:
            nxt = recs[limit]["id"]
            body["paging"] = {"next": {"after": nxt, "link": f"{request.base_url}?after={nxt}"}}
        return hs.json(body)

    def create_one(otype: str) -> Response:
        ot = resolve_type(otype)
        data = hs.body()
        problems: list[dict[str, Any]] = []
        with hs.lock:
            values = check(hs, ot, data.get("properties", {}), None, problems)
            raise_problems(hs, problems)
            check_unique(hs, ot, None, values, {})
            links = data.get("associations") or []
            for link in links:
                assoc.check_input(hs, ot.name, link)
            rec = create(hs, ot, values, links)
            return hs.json(render(hs, ot, rec, None, written=list(values)), 201)

    def lookup(ot: ObjectType, oid: str) -> dict[str, Any] | None:
        id_prop = request.args.get("idProperty")
        if id_prop:
            return find_unique(hs, ot.name, id_prop, oid)
        return live(hs, ot.name, oid)

    def get_one(otype: str, oid: str) -> Response:
        ot = resolve_type(otype)
        archived = request.args.get("archived", "false").lower() == "true"
        with hs.lock:
            rec = store(hs, ot.name).get(oid) if archived else lookup(ot, oid)
            if rec is None or rec["archived"] != archived:
                return Response(status=404)  # HubSpot answers a missing record with an empty 404
            props, links = (
                wanted(request.args.getlist("properties")),
                wanted(request.args.getlist("associations")),
            )
            return hs.json(render(hs, ot, rec, props, with_assoc=links))

    def patch_one(otype: str, oid: str) -> Response:
        ot = resolve_type(otype)
        data = hs.body()
        problems: list[dict[str, Any]] = []
        with hs.lock:
            rec = lookup(ot, oid)
            if rec is None:
                raise ApiError(404, "resource not found", "OBJECT_NOT_FOUND")
            values = check(hs, ot, data.get("properties", {}), rec["properties"], problems)
            raise_problems(hs, problems)
            check_unique(hs, ot, rec["id"], values, {})
            update(hs, ot, rec, values)
            return hs.json(render(hs, ot, rec, None, written=list(values)))

    def delete_one(otype: str, oid: str) -> Response:
        ot = resolve_type(otype)
        with hs.lock:
            archive(hs, ot, oid)
        return Response(status=204)

    app.add_url_rule(base, "hs_get_page", get_page, methods=["GET"])
    app.add_url_rule(base, "hs_create", create_one, methods=["POST"])
    app.add_url_rule(base + "/<oid>", "hs_get", get_one, methods=["GET"])
    app.add_url_rule(base + "/<oid>", "hs_update", patch_one, methods=["PATCH"])
    app.add_url_rule(base + "/<oid>", "hs_archive", delete_one, methods=["DELETE"])


def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, got {raw!r}") from None
