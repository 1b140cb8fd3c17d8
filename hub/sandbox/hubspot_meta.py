"""Schema endpoints: properties and property groups (``/crm/v3/properties``) and pipelines with
their stages (``/crm/v3/pipelines``) for deals and tickets.

A custom property is writable as soon as it exists; an enumeration validates its options and a
``hasUniqueValue`` property can serve as an upsert ``idProperty``. Pipeline stages carry the
metadata HubSpot requires (``ticketState`` for tickets, ``probability`` for deals).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from flask import Flask, Response

from hub.sandbox.hubspot_builtins import VALID_TYPES
from hub.sandbox.hubspot_objects import all_props
from hub.sandbox.hubspot_schema import TYPES, ApiError, iso_ms, resolve_type

if TYPE_CHECKING:
    from hub.sandbox.hubspot import HubSpotStandIn

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_EDITABLE = (
    "label",
    "description",
    "groupName",
    "options",
    "displayOrder",
    "hidden",
    "formField",
    "fieldType",
)


def _groups(hs: HubSpotStandIn, t: str) -> dict[str, dict[str, Any]]:
    builtin = {
        TYPES[t].group: {
            "name": TYPES[t].group,
            "label": TYPES[t].group.replace("information", " information").capitalize(),
            "displayOrder": -1,
            "archived": False,
        }
    }
    return {**builtin, **hs.state["groups"].get(t, {})}


def _options(raw: Any, ptype: str) -> list[dict[str, Any]]:
    if ptype == "bool":
        raw = raw or [{"label": "Yes", "value": "true"}, {"label": "No", "value": "false"}]
    if raw in (None, []):
        if ptype == "enumeration":
            raise ApiError(400, "options are required for an enumeration property")
        return []
    if not isinstance(raw, list) or not all(isinstance(o, dict) and o.get("value") not in (None, "") for o in raw):
        raise ApiError(400, "options must be a list of {label, value} objects with non-empty values")
    return [{"label": str(o.get("label", o["value"])), "value": str(o["value"]),
             "hidden": bool(o.get("hidden", False)), "displayOrder": int(o.get("displayOrder", i)),
             "description": str(o.get("description", ""))}
            for i, o in enumerate(raw)]  # fmt: skip


def create_property(hs: HubSpotStandIn, t: str, data: dict[str, Any]) -> dict[str, Any]:
    name, ptype, field_type = data.get("name"), data.get("type"), data.get("fieldType")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ApiError(
            400,
            f"Invalid property name {name!r}: use lowercase letters, digits and underscores, starting with a letter",
        )
    if not data.get("label"):
        raise ApiError(400, f"label is required for property {name}")
    if ptype not in VALID_TYPES:
        raise ApiError(400, f"Invalid type {ptype!r} for property {name}; valid: {sorted(VALID_TYPES)}")
    if field_type not in VALID_TYPES[ptype]:
        raise ApiError(
            400,
            f"fieldType {field_type!r} is not valid for a {ptype} property ({name}); "
            f"valid: {sorted(VALID_TYPES[ptype])}",
        )
    if name in all_props(hs, t):
        raise ApiError(409, f"Property named '{name}' already exists.", "OBJECT_ALREADY_EXISTS")
    group = data.get("groupName")
    if group not in _groups(hs, t):
        raise ApiError(400, f"Property group {group!r} does not exist for {t}")
    unique = bool(data.get("hasUniqueValue", False))
    if unique and ptype not in ("string", "number"):
        raise ApiError(400, f"hasUniqueValue is only allowed on string and number properties, not {ptype} ({name})")
    now = iso_ms(hs.now_ms())
    prop = {
        "name": name, "label": str(data["label"]), "type": ptype, "fieldType": field_type, "groupName": group,
        "description": str(data.get("description", "")), "options": _options(data.get("options"), ptype),
        "displayOrder": int(data.get("displayOrder", -1)), "hasUniqueValue": unique,
        "hidden": bool(data.get("hidden", False)), "formField": bool(data.get("formField", True)),
        "hubspotDefined": False, "calculated": False, "externalOptions": False, "archived": False,
        "createdAt": now, "updatedAt": now,
        "modificationMetadata": {"archivable": True, "readOnlyDefinition": False, "readOnlyValue": False},
    }  # fmt: skip
    hs.state["properties"].setdefault(t, {})[name] = prop
    hs.changed()
    return prop


def _stage_input(hs: HubSpotStandIn, t: str, raw: Any, order: int) -> dict[str, Any]:
    if not isinstance(raw, dict) or not raw.get("label"):
        raise ApiError(400, "each stage needs a label")
    meta = {k: str(v) for k, v in (raw.get("metadata") or {}).items()}
    if t == "tickets" and meta.get("ticketState") not in ("OPEN", "CLOSED"):
        raise ApiError(400, f"stage {raw['label']!r}: metadata.ticketState must be OPEN or CLOSED for ticket stages")
    if t == "deals":
        try:
            ok = 0.0 <= float(meta.get("probability", "")) <= 1.0
        except ValueError:
            ok = False
        if not ok:
            raise ApiError(400, f"stage {raw['label']!r}: metadata.probability must be a number from 0.0 to 1.0")
    now = iso_ms(hs.now_ms())
    order = int(raw.get("displayOrder", order))
    return {"id": hs.new_id(), "label": str(raw["label"]), "displayOrder": order,
            "metadata": meta, "archived": False, "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
            "createdAt": now, "updatedAt": now}  # fmt: skip


def _pipeline_type(otype: str) -> str:
    t = resolve_type(otype).name
    if t not in ("deals", "tickets"):
        raise ApiError(400, f"Pipelines are not supported for object type {t}")
    return t


def register(hs: HubSpotStandIn, app: Flask) -> None:
    props = "/crm/v3/properties/<otype>"
    pipes = "/crm/v3/pipelines/<otype>"

    def list_props(otype: str) -> Response:
        t = resolve_type(otype).name
        with hs.lock:
            return hs.json({"results": list(all_props(hs, t).values())})

    def get_prop(otype: str, name: str) -> Response:
        t = resolve_type(otype).name
        with hs.lock:
            prop = all_props(hs, t).get(name)
        if prop is None:
            raise ApiError(404, f"Property {name} does not exist", "OBJECT_NOT_FOUND")
        return hs.json(prop)

    def post_prop(otype: str) -> Response:
        t = resolve_type(otype).name
        data = hs.body()
        with hs.lock:
            return hs.json(create_property(hs, t, data), 201)

    def patch_prop(otype: str, name: str) -> Response:
        t = resolve_type(otype).name
        data = hs.body()
        with hs.lock:
            prop = hs.state["properties"].get(t, {}).get(name)
            if prop is None:
                if name in all_props(hs, t):
                    raise ApiError(400, f"Property {name} is defined by HubSpot; its definition is read only")
                raise ApiError(404, f"Property {name} does not exist", "OBJECT_NOT_FOUND")
            for key in _EDITABLE:
                if key in data:
                    prop[key] = _options(data[key], prop["type"]) if key == "options" else data[key]
            prop["updatedAt"] = iso_ms(hs.now_ms())
            hs.changed()
            return hs.json(prop)

    def list_groups(otype: str) -> Response:
        t = resolve_type(otype).name
        with hs.lock:
            return hs.json({"results": list(_groups(hs, t).values())})

    def post_group(otype: str) -> Response:
        t = resolve_type(otype).name
        data = hs.body()
        name = data.get("name")
        if not isinstance(name, str) or not _NAME.match(name) or not data.get("label"):
            raise ApiError(400, f"A property group needs a lowercase name and a label, got name={name!r}")
        with hs.lock:
            if name in _groups(hs, t):
                raise ApiError(409, f"Property group named '{name}' already exists.", "OBJECT_ALREADY_EXISTS")
            order = int(data.get("displayOrder", -1))
            group = {"name": name, "label": str(data["label"]), "displayOrder": order, "archived": False}
            hs.state["groups"].setdefault(t, {})[name] = group
            hs.changed()
        return hs.json(group, 201)

    def list_pipelines(otype: str) -> Response:
        t = _pipeline_type(otype)
        with hs.lock:
            found = [p for p in hs.state["pipelines"].get(t, {}).values() if not p["archived"]]
        return hs.json({"results": sorted(found, key=lambda p: p["displayOrder"])})

    def get_pipeline(otype: str, pid: str) -> Response:
        t = _pipeline_type(otype)
        with hs.lock:
            found = hs.state["pipelines"].get(t, {}).get(pid)
        if found is None or found["archived"]:
            raise ApiError(404, f"Unable to find pipeline {pid} for {t}", "OBJECT_NOT_FOUND")
        return hs.json(found)

    def post_pipeline(otype: str) -> Response:
        t = _pipeline_type(otype)
        data = hs.body()
        label, stages = data.get("label"), data.get("stages")
        if not label or not isinstance(stages, list) or not stages:
            raise ApiError(400, "A pipeline needs a label and at least one stage")
        with hs.lock:
            existing = hs.state["pipelines"].setdefault(t, {})
            if any(p["label"] == label and not p["archived"] for p in existing.values()):
                raise ApiError(409, f"A pipeline labelled {label!r} already exists for {t}", "CONFLICT")
            built = [_stage_input(hs, t, s, i) for i, s in enumerate(stages)]
            now = iso_ms(hs.now_ms())
            order = int(data.get("displayOrder", len(existing)))
            pipe = {"id": hs.new_id(), "label": str(label), "displayOrder": order, "stages": built,
                    "archived": False, "createdAt": now, "updatedAt": now}  # fmt: skip
            existing[pipe["id"]] = pipe
            hs.changed()
        return hs.json(pipe, 201)

    def list_stages(otype: str, pid: str) -> Response:
        resp = get_pipeline(otype, pid)
        return hs.json({"results": [s for s in resp.get_json()["stages"] if not s["archived"]]})

    def post_stage(otype: str, pid: str) -> Response:
        t = _pipeline_type(otype)
        data = hs.body()
        with hs.lock:
            pipe = hs.state["pipelines"].get(t, {}).get(pid)
            if pipe is None or pipe["archived"]:
                raise ApiError(404, f"Unable to find pipeline {pid} for {t}", "OBJECT_NOT_FOUND")
            if any(s["label"] == data.get("label") and not s["archived"] for s in pipe["stages"]):
                raise ApiError(
                    409,
                    f"A stage labelled {data.get('label')!r} already exists in pipeline {pid}",
                    "CONFLICT",
                )
            stage = _stage_input(hs, t, data, len(pipe["stages"]))
            pipe["stages"].append(stage)
            pipe["updatedAt"] = stage["createdAt"]
            hs.changed()
        return hs.json(stage, 201)

    app.add_url_rule(props, "hs_props", list_props, methods=["GET"])
    app.add_url_rule(props, "hs_prop_create", post_prop, methods=["POST"])
    app.add_url_rule(props + "/groups", "hs_groups", list_groups, methods=["GET"])
    app.add_url_rule(props + "/groups", "hs_group_create", post_group, methods=["POST"])
    app.add_url_rule(props + "/<name>", "hs_prop", get_prop, methods=["GET"])
    app.add_url_rule(props + "/<name>", "hs_prop_update", patch_prop, methods=["PATCH"])
    app.add_url_rule(pipes, "hs_pipelines", list_pipelines, methods=["GET"])
    app.add_url_rule(pipes, "hs_pipeline_create", post_pipeline, methods=["POST"])
    app.add_url_rule(pipes + "/<pid>", "hs_pipeline", get_pipeline, methods=["GET"])
    app.add_url_rule(pipes + "/<pid>/stages", "hs_stages", list_stages, methods=["GET"])
    app.add_url_rule(pipes + "/<pid>/stages", "hs_stage_create", post_stage, methods=["POST"])
