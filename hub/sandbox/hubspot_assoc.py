"""Associations v4 (default and labelled, single and batch) and the v3 ``?associations=`` view.

An association is stored in both directions with HubSpot's type ids (contact→company 279 and
company→contact 280, ...); a primary association also carries the unlabeled one, as on HubSpot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request

from hub.sandbox.hubspot_builtins import ASSOC_TYPES, association_name, default_association
from hub.sandbox.hubspot_schema import TYPES, ApiError, batch_inputs, iso_ms, resolve_type

if TYPE_CHECKING:
    from hub.sandbox.hubspot import HubSpotStandIn

_INVALID = "crm.associations.INVALID_ASSOCIATION_TYPE"


def _links(hs: HubSpotStandIn, t: str, oid: str) -> dict[str, dict[str, list[int]]]:
    return hs.state["associations"].setdefault(f"{t}:{oid}", {})


def _peek(hs: HubSpotStandIn, t: str, oid: str) -> dict[str, dict[str, list[int]]]:
    """Read-only view: no empty entries left behind in the saved state."""
    found: dict[str, dict[str, list[int]]] = hs.state["associations"].get(f"{t}:{oid}", {})
    return found


def _exists(hs: HubSpotStandIn, t: str, oid: str) -> None:
    rec = hs.state["objects"].get(t, {}).get(str(oid))
    if rec is None or rec["archived"]:
        raise ApiError(404, f"{TYPES[t].singular} {oid} does not exist", "OBJECT_NOT_FOUND")


def add(hs: HubSpotStandIn, t: str, oid: str, to_t: str, to_id: str, type_ids: list[int]) -> None:
    ids = set(type_ids)
    for tid in list(ids):
        if ASSOC_TYPES[tid][3] == "Primary":  # a primary association is also an unlabeled one
            ids.add(default_association(t, to_t))
    fwd = _links(hs, t, oid).setdefault(to_t, {}).setdefault(str(to_id), [])
    back = _links(hs, to_t, to_id).setdefault(t, {}).setdefault(str(oid), [])
    for tid in sorted(ids):
        if tid not in fwd:
            fwd.append(tid)
        if ASSOC_TYPES[tid][2] not in back:
            back.append(ASSOC_TYPES[tid][2])
    hs.changed()


def remove(hs: HubSpotStandIn, t: str, oid: str, to_t: str, to_id: str) -> None:
    _peek(hs, t, oid).get(to_t, {}).pop(str(to_id), None)
    _peek(hs, to_t, to_id).get(t, {}).pop(str(oid), None)
    hs.changed()


def unlink_all(hs: HubSpotStandIn, t: str, oid: str) -> None:
    for to_t, targets in list(_peek(hs, t, oid).items()):
        for to_id in list(targets):
            remove(hs, t, oid, to_t, to_id)
    hs.state["associations"].pop(f"{t}:{oid}", None)


def _spec_ids(t: str, to_t: str | None, specs: Any) -> tuple[str, list[int]]:
    """(target type, type ids) of a list of ``{associationCategory, associationTypeId}``."""
    if not isinstance(specs, list) or not specs:
        raise ApiError(400, "Invalid input JSON: association types must be a non-empty list", subCategory=_INVALID)
    ids, target = [], to_t
    for spec in specs:
        tid = spec.get("associationTypeId") if isinstance(spec, dict) else None
        known = ASSOC_TYPES.get(int(tid)) if isinstance(tid, int | str) and str(tid).isdigit() else None
        if known is None or known[0] != t or (target is not None and known[1] != target):
            raise ApiError(
                400,
                f"{tid} is not a valid association type for {t}" + (f" to {to_t}" if to_t else ""),
                subCategory=_INVALID,
                context={"type": [str(tid)], "fromObjectType": [t]},
            )
        if spec.get("associationCategory") != "HUBSPOT_DEFINED":
            raise ApiError(
                400,
                f"associationCategory {spec.get('associationCategory')!r} is not known here; "
                "only HUBSPOT_DEFINED types exist in this portal",
                subCategory=_INVALID,
            )
        target = known[1]
        ids.append(int(str(tid)))
    assert target is not None
    return target, ids


def check_input(hs: HubSpotStandIn, t: str, link: Any) -> None:
    """Validate one ``associations`` entry of a create body before anything is written."""
    to_id = link.get("to", {}).get("id") if isinstance(link, dict) and isinstance(link.get("to"), dict) else None
    if to_id is None:
        raise ApiError(400, "Invalid input JSON: each association needs to.id and types")
    to_t, _ = _spec_ids(t, None, link.get("types"))
    _exists(hs, to_t, str(to_id))


def link_from_input(hs: HubSpotStandIn, t: str, oid: str, link: dict[str, Any]) -> None:
    to_t, ids = _spec_ids(t, None, link["types"])
    add(hs, t, oid, to_t, str(link["to"]["id"]), ids)


def v3_view(hs: HubSpotStandIn, t: str, oid: str, to_types: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for raw in to_types:
        try:
            to_t = resolve_type(raw).name
        except ApiError:
            continue  # unknown association names are ignored, as documented
        targets = _peek(hs, t, oid).get(to_t, {})
        results = [{"id": to_id, "type": association_name(tid)} for to_id, ids in targets.items() for tid in ids]
        if results:
            out[to_t] = {"results": results}
    return out


def _typed(ids: list[int]) -> list[dict[str, Any]]:
    return [{"category": "HUBSPOT_DEFINED", "typeId": tid, "label": ASSOC_TYPES[tid][3]} for tid in ids]


def _pair(t: str, oid: str, to_t: str, to_id: str, labels: list[str]) -> dict[str, Any]:
    return {
        "fromObjectTypeId": TYPES[t].type_id,
        "fromObjectId": int(oid),
        "toObjectTypeId": TYPES[to_t].type_id,
        "toObjectId": int(to_id),
        "labels": labels,
    }


def _default_pair(hs: HubSpotStandIn, t: str, oid: str, to_t: str, to_id: str) -> list[dict[str, Any]]:
    _exists(hs, t, oid)
    _exists(hs, to_t, to_id)
    tid = default_association(t, to_t)
    add(hs, t, oid, to_t, to_id, [tid])
    spec = {"associationCategory": "HUBSPOT_DEFINED"}
    return [
        {"from": {"id": oid}, "to": {"id": to_id}, "associationSpec": {**spec, "associationTypeId": tid}},
        {
            "from": {"id": to_id},
            "to": {"id": oid},
            "associationSpec": {**spec, "associationTypeId": ASSOC_TYPES[tid][2]},
        },
    ]


def _batch(hs: HubSpotStandIn, results: list[Any], status: int = 200) -> Response:
    now = iso_ms(hs.now_ms())
    return hs.json({"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}, status)


def _inputs(hs: HubSpotStandIn) -> list[dict[str, Any]]:
    return [i for i in batch_inputs(hs.body()) if isinstance(i, dict)]


def register(hs: HubSpotStandIn, app: Flask) -> None:
    one = "/crm/v4/objects/<ft>/<fid>/associations"
    batch = "/crm/v4/associations/<ft>/<tt>/batch"

    def put_default(ft: str, fid: str, tt: str, tid: str) -> Response:
        t, to_t = resolve_type(ft).name, resolve_type(tt).name
        with hs.lock:
            return _batch(hs, _default_pair(hs, t, fid, to_t, tid))

    def put_labels(ft: str, fid: str, tt: str, tid: str) -> Response:
        t, to_t = resolve_type(ft).name, resolve_type(tt).name
        _, ids = _spec_ids(t, to_t, request.get_json(silent=True))
        with hs.lock:
            _exists(hs, t, fid)
            _exists(hs, to_t, tid)
            add(hs, t, fid, to_t, tid, ids)
        labels = [lab for i in ids if (lab := ASSOC_TYPES[i][3])]
        return hs.json(_pair(t, fid, to_t, tid, labels), 201)

    def delete_one(ft: str, fid: str, tt: str, tid: str) -> Response:
        with hs.lock:
            remove(hs, resolve_type(ft).name, fid, resolve_type(tt).name, tid)
        return Response(status=204)

    def get_page(ft: str, fid: str, tt: str) -> Response:
        t, to_t = resolve_type(ft).name, resolve_type(tt).name
        limit = int(request.args.get("limit", 500))
        after = int(request.args.get("after", 0) or 0)
        with hs.lock:
            _exists(hs, t, fid)
            targets = sorted(_peek(hs, t, fid).get(to_t, {}).items(), key=lambda kv: int(kv[0]))
        rows = [{"toObjectId": int(k), "associationTypes": _typed(v)} for k, v in targets if int(k) >= after]
        body: dict[str, Any] = {"results": rows[:limit]}
        if len(rows) > limit:
            body["paging"] = {"next": {"after": str(rows[limit]["toObjectId"])}}
        return hs.json(body)

    def batch_read(ft: str, tt: str) -> Response:
        t, to_t = resolve_type(ft).name, resolve_type(tt).name
        results = []
        with hs.lock:
            for item in _inputs(hs):
                targets = _peek(hs, t, str(item.get("id"))).get(to_t, {})
                if targets:
                    to = [{"toObjectId": int(k), "associationTypes": _typed(v)} for k, v in sorted(targets.items())]
                    results.append({"from": {"id": str(item.get("id"))}, "to": to})
        return _batch(hs, results)

    def batch_create(ft: str, tt: str) -> Response:
        t, to_t = resolve_type(ft).name, resolve_type(tt).name
        results = []
        with hs.lock:
            items = _inputs(hs)
            for item in items:
                _spec_ids(t, to_t, item.get("types"))
                _exists(hs, t, str(item.get("from", {}).get("id")))
                _exists(hs, to_t, str(item.get("to", {}).get("id")))
            for item in items:
                fid, tid = str(item["from"]["id"]), str(item["to"]["id"])
                _, ids = _spec_ids(t, to_t, item["types"])
                add(hs, t, fid, to_t, tid, ids)
                results.append(_pair(t, fid, to_t, tid, [lab for i in ids if (lab := ASSOC_TYPES[i][3])]))
        return _batch(hs, results, 201)

    def batch_default(ft: str, tt: str) -> Response:
        t, to_t = resolve_type(ft).name, resolve_type(tt).name
        with hs.lock:
            results = [
                row
                for item in _inputs(hs)
                for row in _default_pair(
                    hs, t, str(item.get("from", {}).get("id")), to_t, str(item.get("to", {}).get("id"))
                )
            ]
        return _batch(hs, results)

    def batch_archive(ft: str, tt: str) -> Response:
        t, to_t = resolve_type(ft).name, resolve_type(tt).name
        with hs.lock:
            for item in _inputs(hs):
                for to in item.get("to") or []:
                    remove(hs, t, str(item.get("from", {}).get("id")), to_t, str(to.get("id")))
        return Response(status=204)

    app.add_url_rule(one + "/default/<tt>/<tid>", "hs_assoc_default", put_default, methods=["PUT"])
    app.add_url_rule(one + "/<tt>/<tid>", "hs_assoc_labels", put_labels, methods=["PUT"])
    app.add_url_rule(one + "/<tt>/<tid>", "hs_assoc_delete", delete_one, methods=["DELETE"])
    app.add_url_rule(one + "/<tt>", "hs_assoc_list", get_page, methods=["GET"])
    app.add_url_rule(batch + "/read", "hs_assoc_batch_read", batch_read, methods=["POST"])
    app.add_url_rule(batch + "/create", "hs_assoc_batch_create", batch_create, methods=["POST"])
    app.add_url_rule(batch + "/associate/default", "hs_assoc_batch_default", batch_default, methods=["POST"])
    app.add_url_rule(batch + "/archive", "hs_assoc_batch_archive", batch_archive, methods=["POST"])
