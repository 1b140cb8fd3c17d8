"""Mailchimp list webhooks (``/webhooks/mailchimp/<secret>``): secret URL → form → one job.

Mailchimp signs nothing: the URL's last segment is the shared secret (``MAILCHIMP_WEBHOOK_SECRET``),
compared in constant time. A wrong secret answers 401 rather than 404: the route itself is no
secret (every hub has it), the secret's entropy is what protects it, and the operator whose
webhook Mailchimp refuses reads "wrong secret" instead of guessing at the path.

Mailchimp GETs the URL when the webhook is registered (it must answer 2xx), then POSTs one event
per request, form-encoded with PHP-style nested keys (``data[merges][FNAME]``). Each member event
becomes a source event for the member's subscriber hash (md5 of the lowercased email, as the API
names members); ``data[id]`` is not that hash and cleaned/upemail carry none, so the email decides.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from flask import Blueprint, Response, current_app, jsonify, request

from hub.errors import HubError
from hub.runtime import Runtime
from hub.settings import Settings
from webhooks.intake import Accepted, Reject, accept, answer, body, dedupe_key, guarded, require_content_type

log = logging.getLogger("hub.webhooks.mailchimp")

bp = Blueprint("mailchimp_webhooks", __name__)

PATH = "/webhooks/mailchimp"
FORM = "application/x-www-form-urlencoded"
MEMBER_EVENTS = ("subscribe", "unsubscribe", "profile", "cleaned", "upemail")
EVENTS = (*MEMBER_EVENTS, "campaign")
# The sync reads the member fresh; kind and fields are hints (see hub.engine.sync).
#  subscribe: a new member or a returning one, the worker's state tells which → "unknown".
#  cleaned: the member stays in the list with status "cleaned" (a bounce), so not a deletion.
#  upemail: the member now lives under the new address's hash; the old hash is gone at Mailchimp,
#    but the person is not: no deletion for it (rules on deletions would fire), and "updated"
#    rather than "created" for the new hash so a first-seen record does not replay "created" rules.
HINTS = {
    "subscribe": ("unknown", ["status"]),
    "unsubscribe": ("updated", ["status"]),
    "profile": ("updated", []),  # Mailchimp sends every merge field, not the changed ones
    "cleaned": ("updated", ["status"]),
    "upemail": ("updated", ["email_address"]),
}
_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
MAX_FIELDS = 500


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode("utf-8")).hexdigest()


# -- parsing ------------------------------------------------------------------------------------
def parse_form(raw: bytes) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The form as nested dicts (``data[merges][FNAME]`` → ``{"data": {"merges": {"FNAME": ...}}}``),
    and the flat pairs it came from."""
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(raw),
                          max_num_fields=MAX_FIELDS)  # fmt: skip
    except UnicodeDecodeError:
        raise Reject(400, "malformed form body: not UTF-8") from None
    except ValueError as exc:
        raise Reject(400, f"malformed form body: {exc}") from None
    out: dict[str, Any] = {}
    for name, value in pairs:
        m = _KEY.match(name)
        if m is None:
            raise Reject(400, f"malformed form key {name!r}")
        path = [m.group(1), *re.findall(r"\[([^\[\]]*)\]", m.group(2))]
        node = out
        for i, part in enumerate(path[:-1]):
            key = part if part else str(len(node))
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise Reject(400, f"form key {name!r} nests under {'/'.join(path[: i + 1])!r}, which is a value")
            node = child
        last = path[-1] if path[-1] else str(len(node))
        if isinstance(node.get(last), dict):
            raise Reject(400, f"form key {name!r} is both a value and a group")
        node[last] = value
    return out, pairs


def _fired_ms(value: Any) -> int:
    """``fired_at`` (``YYYY-MM-DD HH:MM:SS``, GMT) as epoch milliseconds."""
    try:
        when = datetime.strptime(str(value), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise Reject(400, f"fired_at must be 'YYYY-MM-DD HH:MM:SS', got {value!r}") from None
    return int(when.timestamp() * 1000)


def _text(data: dict[str, Any], name: str, kind: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Reject(400, f"{kind} event without data[{name}]")
    return value


def parse_event(form: dict[str, Any]) -> dict[str, Any] | None:
    """The source event of one Mailchimp delivery (None for campaign and unknown types)."""
    kind = form.get("type")
    if not isinstance(kind, str) or not kind:
        raise Reject(400, f"missing event type; expected one of {', '.join(EVENTS)}")
    at_ms = _fired_ms(form.get("fired_at"))
    data = form.get("data")
    if not isinstance(data, dict):
        raise Reject(400, f"{kind} event without data[...] fields")
    list_id = _text(data, "list_id", kind)
    if kind not in MEMBER_EVENTS:
        return None  # campaign events (or a type Mailchimp adds later) concern no member
    email = _text(data, "new_email" if kind == "upemail" else "email", kind)
    hint, fields = HINTS[kind]
    event: dict[str, Any] = {"system": "mailchimp", "coll": list_id, "base": "", "id": subscriber_hash(email),
                             "kind": hint, "at_ms": at_ms, "fields": list(fields)}  # fmt: skip
    if kind == "upemail" and isinstance(data.get("old_email"), str) and data["old_email"].strip():
        event["previous_id"] = subscriber_hash(data["old_email"])  # extra: ignored by SourceEvent today
    return event


# -- the endpoint -------------------------------------------------------------------------------
def _settings() -> Settings:
    return current_app.extensions["hub.settings"]  # type: ignore[no-any-return]


def _check_secret(given: str) -> None:
    expected = _settings().get("MAILCHIMP_WEBHOOK_SECRET")
    if not expected:
        log.error("MAILCHIMP_WEBHOOK_SECRET is not set: Mailchimp deliveries cannot be checked")
        raise Reject(503, "Mailchimp intake is not configured (MAILCHIMP_WEBHOOK_SECRET)")
    if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        raise Reject(401, "wrong webhook secret in the URL")


@bp.route(f"{PATH}/<secret>", methods=["GET", "POST"])
@guarded
def receive(secret: str) -> Response:
    """Mailchimp's validation GET, or one event POSTed by a list webhook."""
    _check_secret(secret)
    if request.method == "GET":
        return jsonify({"status": "ok"})
    raw = body()
    require_content_type(FORM)
    form, pairs = parse_form(raw)
    event = parse_event(form)
    if event is None:
        log.info("mailchimp: %s event acknowledged (nothing to sync)", form.get("type"))
        return answer(Accepted(1, 0, 0, None))
    # One event per request; a retry resends the same form, a later change differs somewhere.
    key = dedupe_key("mailchimp", sorted(f"{k}={v}" for k, v in pairs))
    return answer(accept("mailchimp", [event], [key]))


# -- set-up -------------------------------------------------------------------------------------
# Sources: the hub's own API writes come back as echoes (one request and one job each, which the
# sync finds unchanged), but other API clients — site sign-up forms, shop plugins, Zapier — also
# write through the API, and without "api" their members would reach the hub only at a backfill.
DEFAULT_SOURCES = ("user", "admin", "api")


def mapped_lists(rt: Runtime) -> list[str]:
    lists: list[str] = []
    for mapping in rt.config.mappings.values():
        target = mapping.systems.mailchimp
        if target is not None and target.list not in lists:
            lists.append(target.list)
    return lists


def setup(rt: Runtime, public_url: str) -> dict[str, Any]:
    """Register ``{public_url}/webhooks/mailchimp/<secret>`` on every mapped list (idempotent).
    Hub webhooks of the same public URL with another secret (rotated) are removed; a webhook with
    the right URL but other events or sources is re-created. ``MAILCHIMP_WEBHOOK_SOURCES``
    (comma-separated) overrides the sources."""
    secret = rt.settings.require("MAILCHIMP_WEBHOOK_SECRET", "hub webhooks setup (Mailchimp)")
    env_sources = rt.settings.get("MAILCHIMP_WEBHOOK_SOURCES")
    sources = tuple(s.strip() for s in env_sources.split(",") if s.strip()) if env_sources else DEFAULT_SOURCES
    prefix = f"{public_url.rstrip('/')}{PATH}/"
    url = prefix + secret
    shown = prefix + "<secret>"
    connector = rt.connector("mailchimp")
    report: dict[str, Any] = {"url": shown, "sources": list(sources), "lists": {}}
    for list_id in mapped_lists(rt):
        try:
            report["lists"][list_id] = _ensure(connector, list_id, url, prefix, sources)
        except HubError as exc:
            report["lists"][list_id] = {"error": str(exc).replace(secret, "<secret>")}
    return report


def _ensure(connector: Any, list_id: str, url: str, prefix: str, sources: tuple[str, ...]) -> dict[str, Any]:
    """Make the hub's webhook on ``list_id`` be exactly ``url``. The new one is made before stale
    ones go, so a failed registration (Mailchimp's GET refused) leaves the list still fed."""
    kept: str | None = None
    same_url: list[str] = []  # the right URL with other events or sources: Mailchimp allows one per URL
    stale: list[str] = []  # the hub's webhooks under an old secret
    for hook in connector.list_webhooks(list_id):
        hook_url, hook_id = str(hook.get("url") or ""), str(hook.get("id"))
        if not hook_url.startswith(prefix):
            continue  # someone else's webhook
        events = {e for e, on in (hook.get("events") or {}).items() if on}
        on_sources = {s for s, on in (hook.get("sources") or {}).items() if on}
        if hook_url == url and kept is None and events == set(MEMBER_EVENTS) and on_sources == set(sources):
            kept = hook_id
        else:
            (same_url if hook_url == url else stale).append(hook_id)
    for hook_id in same_url:
        connector.delete_webhook(list_id, hook_id)
    created = kept is None
    if kept is None:
        kept = str(connector.create_webhook(list_id, url, events=MEMBER_EVENTS, sources=sources).get("id"))
    for hook_id in stale:
        connector.delete_webhook(list_id, hook_id)
    return {"webhook": kept, "created": created, "removed": len(same_url) + len(stale)}
