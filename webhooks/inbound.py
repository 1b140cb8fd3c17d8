"""Generic signed webhooks (``POST /webhooks/in/<name>``) from forms and apps, per Standard Webhooks.

Each name is declared in ``rules.yaml`` (``webhooks: {<name>: {secret: "${ENV}", tolerance?}}``);
an undeclared name is a 404, so the endpoint offers nothing to guess at. A delivery becomes one
inbound event ``{"name", "id": webhook-id, "payload", "at_ms"}`` that rules with
``when: {webhook: <name>}`` act on; the webhook-id (kept across the sender's retries) de-duplicates.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app

from hub.config.rules import InboundWebhook
from hub.runtime import Runtime
from webhooks import standard
from webhooks.intake import Reject, accept, answer, body, dedupe_key, guarded, parse_json, require_content_type

log = logging.getLogger("hub.webhooks.inbound")

bp = Blueprint("inbound_webhooks", __name__)

PATH = "/webhooks/in/<name>"


def declared(name: str) -> InboundWebhook:
    """The config of webhook ``name``, or a 404 (before the body is even read)."""
    runtime: Runtime = current_app.extensions["hub.runtime"]
    hook = runtime.config.rules_file.webhooks.get(name)
    if hook is None:
        raise Reject(404, f"no inbound webhook named {name!r} is declared in rules.yaml (or `hub check` refused it)")
    return hook


def event_time_ms(payload: dict[str, Any], sent: int) -> int:
    """The event's own time when the payload follows the spec's shape (``timestamp``, ISO), else
    the delivery's (a retry re-sends with a newer webhook-timestamp)."""
    value = payload.get("timestamp")
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return int(moment.timestamp() * 1000)
    return sent * 1000


@bp.post(PATH)
@guarded
def receive(name: str) -> Response:
    """Verify, parse, de-duplicate and enqueue one delivery of webhook ``name``."""
    hook = declared(name)
    raw = body()
    require_content_type("application/json")
    tolerance = hook.tolerance.total_seconds() if hook.tolerance else standard.TOLERANCE
    verified = standard.verify_request(hook.secret, raw, tolerance, f"inbound webhook {name!r}")
    payload = parse_json(raw)
    if not isinstance(payload, dict):
        raise Reject(400, f"expected a JSON object, got {type(payload).__name__}")
    event = {"name": name, "id": verified.id, "payload": payload, "at_ms": event_time_ms(payload, verified.timestamp)}
    return answer(accept("inbound", [event], [dedupe_key("inbound", [name, verified.id])]))
