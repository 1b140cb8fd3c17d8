"""Webhooks v3: the app's settings and subscriptions, and the signed event batches sent to its
target URL whenever a subscribed change happens (API writes included).

Events of a short window (and at most 100) travel in one JSON array, delivered by the shared
:class:`WebhookSender` (retries, duplicate and reorder faults). Each attempt is signed afresh
with signature v3 — ``base64(HMAC-SHA256(client_secret, method + uri + body + timestamp))`` in
``X-HubSpot-Signature-v3`` with ``X-HubSpot-Request-Timestamp`` — and carries its
``attemptNumber`` (0 on the first try).

``/_sandbox/hubspot/objects/...`` edits records as a person in HubSpot's UI would
(``changeSource: CRM_UI``), so tests can play the operator.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from flask import Flask, Response

from hub.sandbox.common import Delivery
from hub.sandbox.hubspot_objects import (
    all_props,
    check,
    check_unique,
    create,
    live,
    raise_problems,
    render,
    update,
)
from hub.sandbox.hubspot_schema import TYPES, WEBHOOK_TYPES, ApiError, iso_ms, resolve_type

if TYPE_CHECKING:
    from hub.sandbox.hubspot import HubSpotStandIn

MAX_EVENTS = 100
KINDS = ("creation", "deletion", "propertyChange")
EVENT_TYPES = {f"{TYPES[t].singular}.{k}" for t in WEBHOOK_TYPES for k in KINDS}
_USER_AGENT = "HubSpot Connect 2.0 (http://dev.hubspot.com/) (namespace: webhooks-nio-http-client)"


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    source = method.encode() + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest()).decode()


@dataclass
class _Batch:
    url: str
    opened: float
    events: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False


class Hooks:
    """Turns changes into events and events into signed, batched deliveries."""

    def __init__(self, hs: HubSpotStandIn, *, window: float) -> None:
        self.hs = hs
        self.window = window
        self._lock = threading.Lock()
        self._open: _Batch | None = None

    def emit(self, t: str, oid: str, kind: str, prop: str | None = None, value: Any = None,
             source: str = "API") -> None:  # fmt: skip
        """Queue an event for every active subscription the change matches (caller holds hs.lock)."""
        hs = self.hs
        hooks = hs.state["webhooks"]
        settings = hooks["settings"]
        if t not in WEBHOOK_TYPES or not settings:
            return
        event_type = f"{TYPES[t].singular}.{kind}"
        for sub in hooks["subscriptions"].values():
            if not sub["active"] or sub["eventType"] != event_type:
                continue
            if kind == "propertyChange" and sub.get("propertyName") != prop:
                continue
            event: dict[str, Any] = {
                "eventId": hooks["next_event"], "subscriptionId": int(sub["id"]), "portalId": hs.portal_id,
                "appId": hs.app_id, "occurredAt": hs.now_ms(), "subscriptionType": event_type,
                "attemptNumber": 0, "objectId": int(oid), "changeSource": source,
            }  # fmt: skip
            hooks["next_event"] += 1
            if kind == "propertyChange":
                event.update(propertyName=prop, propertyValue="" if value is None else str(value))
            else:
                event["changeFlag"] = "NEW" if kind == "creation" else "DELETED"
            self._enqueue(settings["targetUrl"], event)
        hs.changed()

    def _enqueue(self, url: str, event: dict[str, Any]) -> None:
        delivery = None
        with self._lock:
            batch = self._open
            now = time.monotonic()
            if batch is None or batch.closed or batch.url != url or len(batch.events) >= MAX_EVENTS \
                    or now - batch.opened > self.window:  # fmt: skip
                if batch is not None:
                    batch.closed = True
                batch = self._open = _Batch(url, now)
                delivery = Delivery(url, b"", {}, prepare=partial(self._prepare, batch))
            batch.events.append(event)
        if delivery is not None:
            self.hs.sender.send(delivery)

    def _prepare(self, batch: _Batch, item: Delivery) -> None:
        """Runs before each attempt: close the batch, bump attemptNumber, sign with a fresh timestamp."""
        if not batch.closed:
            wait = batch.opened + self.window - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        with self._lock:
            batch.closed = True
            if self._open is batch:
                self._open = None
            events = [dict(e, attemptNumber=item.attempts - 1) for e in batch.events]
        body = json.dumps(events).encode()
        stamp = str(int(time.time() * 1000))
        secret = self.hs.client_secret
        item.body = body
        item.headers = {
            "Content-Type": "application/json", "User-Agent": _USER_AGENT,
            "X-HubSpot-Signature-Version": "v1",
            "X-HubSpot-Signature": hashlib.sha256(secret.encode() + body).hexdigest(),
            "X-HubSpot-Signature-v3": sign_v3(secret, "POST", batch.url, body, stamp),
            "X-HubSpot-Request-Timestamp": stamp,
        }  # fmt: skip

    def close(self) -> None:
        with self._lock:
            self._open = None


def _subscription(hs: HubSpotStandIn, data: dict[str, Any], now: str) -> dict[str, Any]:
    event_type, prop = data.get("eventType"), data.get("propertyName")
    if event_type not in EVENT_TYPES:
        raise ApiError(400, f"Unsupported eventType {event_type!r}; this portal offers {sorted(EVENT_TYPES)}")
    t = resolve_type(event_type.split(".")[0]).name
    if event_type.endswith(".propertyChange"):
        if not prop:
            raise ApiError(400, f"propertyName is required for {event_type} subscriptions")
        if prop not in all_props(hs, t):
            raise ApiError(400, f"Property {prop} does not exist for {t}")
    elif prop:
        raise ApiError(400, f"propertyName is only allowed on propertyChange subscriptions, not {event_type}")
    return {"eventType": event_type, "propertyName": prop, "active": bool(data.get("active", True)),
            "createdAt": now, "updatedAt": now}  # fmt: skip


def register(hs: HubSpotStandIn, app: Flask) -> None:
    base = "/webhooks/v3/<int:app_id>"

    def app_hooks(app_id: int) -> dict[str, Any]:
        if app_id != hs.app_id:
            raise ApiError(404, f"App {app_id} not found for this developer account", "OBJECT_NOT_FOUND")
        hooks: dict[str, Any] = hs.state["webhooks"]
        return hooks

    def get_settings(app_id: int) -> Response:
        with hs.lock:
            settings = app_hooks(app_id)["settings"]
        if not settings:
            raise ApiError(404, f"No webhook settings found for app {app_id}", "OBJECT_NOT_FOUND")
        return hs.json(settings)

    def put_settings(app_id: int) -> Response:
        data = hs.body()
        url = data.get("targetUrl")
        parsed = urlparse(str(url or ""))
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ApiError(400, f"targetUrl must be an absolute http(s) URL, got {url!r}")
        max_conc = (data.get("throttling") or {}).get("maxConcurrentRequests")
        if not isinstance(max_conc, int) or max_conc < 5:
            raise ApiError(400, f"throttling.maxConcurrentRequests must be an integer ≥ 5, got {max_conc!r}")
        with hs.lock:
            hooks = app_hooks(app_id)
            now = iso_ms(hs.now_ms())
            created = (hooks["settings"] or {}).get("createdAt", now)
            throttling = {"maxConcurrentRequests": max_conc, "period": "SECONDLY"}
            hooks["settings"] = {
                "targetUrl": url,
                "throttling": throttling,
                "createdAt": created,
                "updatedAt": now,
            }
            hs.changed()
            return hs.json(hooks["settings"])

    def delete_settings(app_id: int) -> Response:
        with hs.lock:
            app_hooks(app_id)["settings"] = None
            hs.changed()
        return Response(status=204)

    def list_subs(app_id: int) -> Response:
        with hs.lock:
            return hs.json({"results": list(app_hooks(app_id)["subscriptions"].values())})

    def post_sub(app_id: int) -> Response:
        data = hs.body()
        with hs.lock:
            hooks = app_hooks(app_id)
            sub = _subscription(hs, data, iso_ms(hs.now_ms()))
            for old in hooks["subscriptions"].values():
                if old["eventType"] == sub["eventType"] and old.get("propertyName") == sub["propertyName"]:
                    what = f"{sub['eventType']} {sub['propertyName'] or ''}".strip()
                    raise ApiError(409, f"A subscription for {what} already exists (id {old['id']})", "CONFLICT")
            sub["id"] = str(hooks["next_subscription"])
            hooks["next_subscription"] += 1
            hooks["subscriptions"][sub["id"]] = sub
            hs.changed()
        return hs.json(sub, 201)

    def one_sub(app_id: int, sid: str) -> dict[str, Any]:
        sub = app_hooks(app_id)["subscriptions"].get(sid)
        if sub is None:
            raise ApiError(404, f"Subscription {sid} not found", "OBJECT_NOT_FOUND")
        found: dict[str, Any] = sub
        return found

    def get_sub(app_id: int, sid: str) -> Response:
        with hs.lock:
            return hs.json(one_sub(app_id, sid))

    def patch_sub(app_id: int, sid: str) -> Response:
        data = hs.body()
        with hs.lock:
            sub = one_sub(app_id, sid)
            if "active" in data:
                sub["active"] = bool(data["active"])
                sub["updatedAt"] = iso_ms(hs.now_ms())
                hs.changed()
            return hs.json(sub)

    def delete_sub(app_id: int, sid: str) -> Response:
        with hs.lock:
            one_sub(app_id, sid)
            del app_hooks(app_id)["subscriptions"][sid]
            hs.changed()
        return Response(status=204)

    def batch_update(app_id: int) -> Response:
        items = hs.body().get("inputs") or []
        with hs.lock:
            results = []
            for item in items:
                sub = one_sub(app_id, str(item.get("id")))
                sub["active"] = bool(item.get("active"))
                results.append(sub)
            hs.changed()
        now = iso_ms(hs.now_ms())
        return hs.json({"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now})

    def ui_write(otype: str, oid: str | None = None) -> Response:
        """A person edits (or creates) a record in HubSpot's UI: same checks, changeSource CRM_UI."""
        ot = resolve_type(otype)
        values_in = hs.body().get("properties", {})
        problems: list[dict[str, Any]] = []
        with hs.lock:
            rec = live(hs, ot.name, oid) if oid else None
            if oid and rec is None:
                raise ApiError(404, "resource not found", "OBJECT_NOT_FOUND")
            values = check(hs, ot, values_in, rec["properties"] if rec else None, problems)
            raise_problems(hs, problems)
            check_unique(hs, ot, oid, values, {})
            if rec is None:
                rec = create(hs, ot, values, [], source="CRM_UI")
            else:
                update(hs, ot, rec, values, source="CRM_UI")
            return hs.json(render(hs, ot, rec, None, written=list(values)), 200 if oid else 201)

    app.add_url_rule(base + "/settings", "hs_hook_settings", get_settings, methods=["GET"])
    app.add_url_rule(base + "/settings", "hs_hook_settings_put", put_settings, methods=["PUT"])
    app.add_url_rule(base + "/settings", "hs_hook_settings_delete", delete_settings, methods=["DELETE"])
    app.add_url_rule(base + "/subscriptions", "hs_subs", list_subs, methods=["GET"])
    app.add_url_rule(base + "/subscriptions", "hs_sub_create", post_sub, methods=["POST"])
    app.add_url_rule(base + "/subscriptions/batch/update", "hs_sub_batch", batch_update, methods=["POST"])
    app.add_url_rule(base + "/subscriptions/<sid>", "hs_sub", get_sub, methods=["GET"])
    app.add_url_rule(base + "/subscriptions/<sid>", "hs_sub_patch", patch_sub, methods=["PATCH"])
    app.add_url_rule(base + "/subscriptions/<sid>", "hs_sub_delete", delete_sub, methods=["DELETE"])
    app.add_url_rule("/_sandbox/hubspot/objects/<otype>", "hs_ui_create", ui_write, methods=["POST"])
    app.add_url_rule("/_sandbox/hubspot/objects/<otype>/<oid>", "hs_ui_update", ui_write, methods=["PATCH"])
