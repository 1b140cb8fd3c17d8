"""HubSpot webhooks (``POST /webhooks/hubspot``): signature v3 → batch of events → one job.

HubSpot signs ``method + URI + raw body + X-HubSpot-Request-Timestamp`` with the app's client
secret (base64 HMAC-SHA256). The URI is the one HubSpot called: behind a proxy the app sees
another host and scheme, so ``HUB_PUBLIC_URL`` (the base given to ``hub webhooks setup``) rebuilds
it. v1/v2 signatures carry no timestamp (a captured request replays forever), so only v3 counts.

A request is a JSON array of events, several of them often about one record (a creation comes
with one ``propertyChange`` per property set). They are folded into one source event per record,
since the worker reads the record fresh anyway; its de-duplication key covers every HubSpot
event folded into it, and a retry resends the same batch (only ``attemptNumber`` changes).
"""

from __future__ import annotations

import base64
import hmac
import logging
import re
import time
from typing import Any

from flask import Blueprint, Response, current_app, request

from hub.errors import HubError
from hub.runtime import Runtime
from hub.settings import Settings
from webhooks.intake import Reject, accept, answer, body, dedupe_key, guarded, parse_json, require_content_type

log = logging.getLogger("hub.webhooks.hubspot")

bp = Blueprint("hubspot_webhooks", __name__)

PATH = "/webhooks/hubspot"
SIGNATURE = "X-HubSpot-Signature-v3"
TIMESTAMP = "X-HubSpot-Request-Timestamp"
TOLERANCE_MS = 5 * 60 * 1000  # HubSpot: reject requests whose timestamp is older than 5 minutes

# Webhook payloads name object types in the singular (``contact.creation``) or, in the newer
# ``object.*`` form, by type id (objectTypeId ``0-1``); the mappings use the API names.
SINGULAR = {
    "contact": "contacts",
    "company": "companies",
    "deal": "deals",
    "ticket": "tickets",
    "product": "products",
    "line_item": "line_items",
}
TYPE_IDS = {"0-1": "contacts", "0-2": "companies", "0-3": "deals", "0-5": "tickets", "0-7": "products",
            "0-8": "line_items"}  # fmt: skip
KINDS = {
    "creation": "created",
    "propertyChange": "updated",
    "deletion": "deleted",
    "privacyDeletion": "deleted",
    "restore": "unknown",  # back from the recycle bin: the worker's fresh read decides
    "associationChange": "updated",
    "merge": "updated",
}
# HubSpot's docs list the characters to URL-decode in the URI before signing (not the '?').
_DECODE = re.compile(r"%(3A|2F|3F|40|21|24|27|28|29|2A|2C|3B)", re.IGNORECASE)
_RANK = {"updated": 0, "unknown": 1, "created": 2}


# -- signature ----------------------------------------------------------------------------------
def sign_v3(secret: str, method: str, uri: str, raw: bytes, timestamp: str) -> str:
    """The v3 signature HubSpot sends for this request."""
    message = method.encode() + uri.encode() + raw + timestamp.encode()
    return base64.b64encode(hmac.digest(secret.encode(), message, "sha256")).decode()


def requested_uri(public_url: str | None = None) -> str:
    """The full URI (query string included) the caller used: raw as received, on the public base if set."""
    env = request.environ
    raw = env.get("RAW_URI") or env.get("REQUEST_URI")
    if not raw or not raw.startswith("/"):
        query = env.get("QUERY_STRING") or ""
        raw = request.script_root + request.path + (f"?{query}" if query else "")
    if public_url:
        root = request.script_root
        if root and raw.startswith(root):
            raw = raw[len(root) :]
        return public_url.rstrip("/") + raw
    return f"{request.scheme}://{request.host}{raw}"


def verify(secret: str, raw: bytes, uri: str) -> None:
    """Raise a 401 :class:`Reject` unless the request carries a fresh, valid v3 signature."""
    signature = request.headers.get(SIGNATURE)
    stamp = request.headers.get(TIMESTAMP)
    if not signature:
        raise Reject(401, f"missing {SIGNATURE} header (only signature v3 is accepted)")
    if not stamp:
        raise Reject(401, f"missing {TIMESTAMP} header")
    try:
        sent_ms = int(stamp)
    except ValueError:
        raise Reject(401, f"{TIMESTAMP} is not epoch milliseconds") from None
    now = int(time.time() * 1000)  # the sender's wall clock, not the hub's pinnable one
    if abs(now - sent_ms) > TOLERANCE_MS:
        raise Reject(401, f"stale {TIMESTAMP}: {abs(now - sent_ms) // 1000} s from now (limit 300 s)")
    given = signature.encode("latin-1")
    candidates = [uri]
    decoded = _DECODE.sub(lambda m: chr(int(m.group(1), 16)), uri)
    if decoded != uri:
        candidates.append(decoded)
    for candidate in candidates:
        if hmac.compare_digest(sign_v3(secret, request.method, candidate, raw, stamp).encode(), given):
            return
    raise Reject(401, f"bad {SIGNATURE} signature")


# -- events -------------------------------------------------------------------------------------
def _fold(earlier: str, later: str) -> str:
    if later == "deleted":
        return "deleted"
    if earlier == "deleted":
        return later  # restored after a deletion
    return earlier if _RANK[earlier] >= _RANK[later] else later


def _int(ev: dict[str, Any], name: str, index: int) -> int:
    value = ev.get(name)
    if type(value) is int:  # the usual case, first: this runs for every event of every request
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise Reject(400, f"event {index}: {name} must be an integer, got {value!r}")


def _route(stype: Any, index: int) -> tuple[str, str | None, str | None]:
    """(action, kind, collection) of a subscription type; the collection of ``object.*`` types is
    in each event (None here). Cached: a portal sends a handful of distinct types."""
    route = _ROUTES.get(stype) if isinstance(stype, str) else None
    if route is None:
        prefix, _, action = stype.partition(".") if isinstance(stype, str) else ("", "", "")
        if not action:
            raise Reject(400, f"event {index}: subscriptionType must look like 'contact.creation', got {stype!r}")
        route = (action, KINDS.get(action), None if prefix == "object" else SINGULAR.get(prefix, ""))
        if len(_ROUTES) < 256:
            _ROUTES[stype] = route
    return route


_ROUTES: dict[str, tuple[str, str | None, str | None]] = {}


def _object_coll(ev: dict[str, Any], action: str) -> str:
    type_id = ev.get("fromObjectTypeId" if action == "associationChange" else "objectTypeId")
    return TYPE_IDS.get(str(type_id), str(type_id)) if type_id else ""


def _targets(ev: dict[str, Any], action: str, kind: str, index: int) -> list[tuple[str, str]]:
    """(record id, kind) pairs an event is about."""
    if action == "merge":
        primary = str(_int(ev, "primaryObjectId", index))
        merged = [str(m) for m in ev.get("mergedObjectIds") or [] if str(m) != primary]
        return [(primary, "updated"), *((m, "deleted") for m in merged)]
    if action == "associationChange":
        return [(str(_int(ev, "fromObjectId", index)), kind)]
    return [(str(_int(ev, "objectId", index)), kind)]


def parse_events(payload: Any) -> tuple[list[dict[str, Any]], list[str], int]:
    """Source events and their de-duplication keys from a HubSpot batch; also how many were ignored.

    Events about one record fold into one: the latest kind wins (a deletion over anything, a
    creation over an update), fields add up, and the key covers every HubSpot event folded in.
    """
    if not isinstance(payload, list):
        raise Reject(400, f"expected a JSON array of events, got {type(payload).__name__}")
    # (collection, record id) → [kind, at_ms, fields, key parts]
    groups: dict[tuple[str, str], list[Any]] = {}
    ignored = 0
    for index, ev in enumerate(payload):
        if type(ev) is not dict:
            raise Reject(400, f"event {index}: expected an object, got {type(ev).__name__}")
        stype = ev.get("subscriptionType")
        action, kind, coll = _route(stype, index)
        if coll is None:
            coll = _object_coll(ev, action)
        if kind is None or not coll:
            ignored += 1  # a type the hub does not sync: acknowledged, never retried
            continue
        at_ms = ev.get("occurredAt")
        if type(at_ms) is not int:
            at_ms = _int(ev, "occurredAt", index)
        event_id = ev.get("eventId")
        if type(event_id) is not int:
            event_id = _int(ev, "eventId", index)
        # eventId is unique only within a subscription; retries keep it, attemptNumber changes.
        part = f"{ev.get('portalId')}|{ev.get('appId')}|{ev.get('subscriptionId')}|{stype}|{event_id}|{at_ms}|"
        prop = ev.get("propertyName") if action == "propertyChange" else None
        object_id = ev.get("objectId")
        if type(object_id) is int and action != "merge" and action != "associationChange":
            targets: list[tuple[str, str]] = [(str(object_id), kind)]  # the usual case
        else:
            targets = _targets(ev, action, kind, index)
        for record_id, record_kind in targets:
            group = groups.get((coll, record_id))
            if group is None:
                groups[(coll, record_id)] = [record_kind, at_ms, [str(prop)] if prop else [], [part + record_id]]
                continue
            if at_ms >= group[1]:
                group[0], group[1] = _fold(group[0], record_kind), at_ms
            else:
                group[0] = _fold(record_kind, group[0])
            if prop and str(prop) not in group[2]:
                group[2].append(str(prop))
            group[3].append(part + record_id)
    events = []
    keys = []
    for (coll, record_id), (kind, at_ms, fields, parts) in groups.items():
        events.append({"system": "hubspot", "coll": coll, "base": "", "id": record_id, "kind": kind,
                       "at_ms": at_ms, "fields": sorted(fields)})  # fmt: skip
        keys.append(dedupe_key("hubspot", sorted(parts) if len(parts) > 1 else parts))
    return events, keys, ignored


# -- the endpoint -------------------------------------------------------------------------------
def _settings() -> Settings:
    return current_app.extensions["hub.settings"]  # type: ignore[no-any-return]


@bp.post(PATH)
@guarded
def receive() -> Response:
    """Verify, parse, de-duplicate and enqueue one HubSpot delivery."""
    raw = body()
    require_content_type("application/json")
    settings = _settings()
    secret = settings.get("HUBSPOT_CLIENT_SECRET")
    if not secret:
        log.error("HUBSPOT_CLIENT_SECRET is not set: HubSpot deliveries cannot be verified")
        raise Reject(503, "HubSpot intake is not configured (HUBSPOT_CLIENT_SECRET)")
    public = current_app.config.get("HUB_PUBLIC_URL") or settings.get("HUB_PUBLIC_URL")
    verify(secret, raw, requested_uri(public))
    events, keys, ignored = parse_events(parse_json(raw))
    if ignored:
        log.info("hubspot: %d event(s) of types the hub does not sync acknowledged", ignored)
    return answer(accept("hubspot", events, keys))


# -- set-up -------------------------------------------------------------------------------------
_EVENT_PREFIX = {v: k for k, v in SINGULAR.items() if k in ("contact", "company", "deal", "ticket")}
_PROPERTY = re.compile(r"^[a-z0-9_]+$")


def event_types(rt: Runtime) -> dict[str, list[str]]:
    """Per mapped HubSpot object type, the subscriptions the hub needs: creation, deletion and a
    propertyChange per mapped property."""
    out: dict[str, list[str]] = {}
    for mapping in rt.config.mappings.values():
        target = mapping.systems.hubspot
        if target is None:
            continue
        obj = TYPE_IDS.get(target.object, target.object)
        prefix = _EVENT_PREFIX.get(obj)
        if prefix is None:
            out.setdefault(obj, [])
            continue
        wanted = out.setdefault(obj, [f"{prefix}.creation", f"{prefix}.deletion"])
        for sf in target.fields.values():
            prop = sf.field.split(".")[0]
            name = f"{prefix}.propertyChange:{prop}"
            if _PROPERTY.match(prop) and name not in wanted:
                wanted.append(name)
    return out


def setup(rt: Runtime, public_url: str) -> dict[str, Any]:
    """Point the app's webhooks at ``{public_url}/webhooks/hubspot`` and subscribe every mapped
    object type (idempotent: existing subscriptions are kept, paused ones re-activated)."""
    app_id = rt.settings.require("HUBSPOT_APP_ID", "hub webhooks setup (HubSpot)")
    target = public_url.rstrip("/") + PATH
    connector = rt.connector("hubspot")
    report: dict[str, Any] = {"target": target, "objects": {}}
    for obj, types in event_types(rt).items():
        if not types:
            report["objects"][obj] = {"skipped": "HubSpot sends webhooks for contacts, companies, deals, tickets only"}
            continue
        try:
            ids = connector.subscribe(app_id, target, types)
        except HubError as exc:
            report["objects"][obj] = {"error": str(exc)}
            continue
        report["objects"][obj] = {"subscriptions": dict(zip(types, ids, strict=True))}
    return report
