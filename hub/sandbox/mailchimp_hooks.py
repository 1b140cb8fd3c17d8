"""List webhooks of the Mailchimp stand-in, and the admin routes that make a contact act.

Like Mailchimp, registering a webhook first GETs the URL (a non-2xx answer refuses it), and
deliveries are form-encoded POSTs: ``type``, ``fired_at`` (``YYYY-MM-DD HH:MM:SS``) and
``data[...]`` keys with nested brackets (``data[merges][FNAME]``). Each webhook picks events
(subscribe, unsubscribe, profile, cleaned, upemail, campaign) and sources (user, admin, api);
campaign events ignore sources. Payload keys per type follow Mailchimp's: cleaned and upemail
carry no ``data[id]`` (upemail has ``data[new_id]``), so receivers must hash the email.

The routes under ``/_sandbox/lists/<list_id>/...`` stand for what happens outside the API: a
contact signs up, unsubscribes, edits their profile, an address bounces, a campaign is sent.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import requests
from flask import Flask, Response, request

from hub.sandbox.common import Delivery
from hub.sandbox.mailchimp_http import json_body, json_response, no_content, projected
from hub.sandbox.mailchimp_model import (
    check_email,
    fired_at,
    invalid,
    not_found,
    render,
    set_status,
    subscriber_hash,
)
from hub.sandbox.mailchimp_upsert import change_email, check_new_email, live_member, new_member, update_member

if TYPE_CHECKING:
    from hub.sandbox.mailchimp import MailchimpStandIn

EVENTS = ("subscribe", "unsubscribe", "profile", "cleaned", "upemail", "campaign")
SOURCES = ("user", "admin", "api")
# What a webhook listens to when the POST body leaves a flag out (the sandbox's choice: API
# changes are off by default, so a hub writing through the API does not hear its own echo).
DEFAULT_EVENTS = {
    "subscribe": True,
    "unsubscribe": True,
    "profile": True,
    "cleaned": True,
    "upemail": True,
    "campaign": False,
}
DEFAULT_SOURCES = {"user": True, "admin": True, "api": False}
VALIDATOR_AGENT = "MailChimp.com WebHook Validator"
SENDER_AGENT = "MailChimp.com"


def check_hook(body: dict[str, Any]) -> dict[str, Any]:
    """Validate a webhook POST body; returns url, events and sources with defaults filled in."""
    url, errors = body.get("url"), []
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        errors.append({"field": "url", "message": "Please enter a valid http:// or https:// URL."})
    flags: dict[str, dict[str, bool]] = {}
    for key, names, defaults in (("events", EVENTS, DEFAULT_EVENTS), ("sources", SOURCES, DEFAULT_SOURCES)):
        given = body.get(key) or {}
        unknown = sorted(set(given) - set(names)) if isinstance(given, dict) else ["(not an object)"]
        if unknown or not all(isinstance(v, bool) for v in given.values()):
            errors.append({"field": key, "message": f"{key} maps {', '.join(names)} to booleans; bad: {unknown}"})
            continue
        flags[key] = {n: bool(given.get(n, defaults[n])) for n in names}
    if errors:
        raise invalid(errors=errors)
    return {"url": url, **flags}


def probe(url: str, timeout: float) -> str | None:
    """Mailchimp checks a webhook URL with a GET before saving it; the reason it failed, or None."""
    try:
        resp = requests.get(url, headers={"User-Agent": VALIDATOR_AGENT}, timeout=timeout)
    except requests.RequestException as exc:
        return f"The URL could not be reached ({type(exc).__name__})."
    if not 200 <= resp.status_code < 300:
        return f"The URL returned HTTP {resp.status_code} to the validation GET; it must answer 2xx."
    return None


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}[{k}]", v, out)
    else:
        out.append((prefix, "" if value is None else str(value)))


def payload(kind: str, lst_id: str, member: dict[str, Any] | None, extra: dict[str, Any], when: float) -> bytes:
    """The form-encoded body Mailchimp POSTs for one event."""
    data: dict[str, Any] = {}
    if kind in ("subscribe", "profile", "unsubscribe") and member is not None:
        if kind == "unsubscribe":
            data.update(action=extra.get("action", "unsub"), reason=extra.get("reason", "manual"))
        data.update(
            id=member["id"],
            email=member["email_address"],
            email_type=member["email_type"],
            web_id=member["web_id"],
            ip_opt=member["ip_opt"],
            ip_signup=member["ip_signup"],
        )
        data["merges"] = {"EMAIL": member["email_address"], **member["merge_fields"]}
        if kind == "unsubscribe":
            data["campaign_id"] = extra.get("campaign_id", "")
    elif kind == "cleaned" and member is not None:
        data.update(
            campaign_id=extra.get("campaign_id", ""),
            reason=extra.get("reason", "hard"),
            email=member["email_address"],
        )
    elif kind == "upemail":
        data.update(new_id=extra["new_id"], new_email=extra["new_email"], old_email=extra["old_email"])
    elif kind == "campaign":
        data.update(
            id=extra["id"],
            subject=extra.get("subject", ""),
            status=extra.get("status", "sent"),
            reason=extra.get("reason", ""),
        )
    data["list_id"] = lst_id
    fields: list[tuple[str, str]] = [("type", kind), ("fired_at", fired_at(when))]
    _flatten("data", data, fields)
    return urlencode(fields).encode()


def fire(
    mc: MailchimpStandIn,
    lst: dict[str, Any],
    kind: str,
    source: str,
    member: dict[str, Any] | None,
    extra: dict[str, Any],
) -> None:
    """Queue one delivery per webhook of ``lst`` that listens to ``kind`` from ``source``."""
    hooks = [
        h
        for h in lst["_webhooks"].values()
        if h["events"].get(kind) and (kind == "campaign" or h["sources"].get(source))
    ]
    if not hooks:
        return
    body = payload(kind, lst["id"], member, extra, mc.now())
    headers = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": SENDER_AGENT}
    for hook in hooks:
        mc.sender.send(Delivery(hook["url"], body, dict(headers)))


def render_hook(mc: MailchimpStandIn, hook: dict[str, Any]) -> dict[str, Any]:
    href = f"{mc.base_url()}/lists/{hook['list_id']}/webhooks/{hook['id']}"
    return {
        **hook,
        "_links": [
            {"rel": "self", "href": href, "method": "GET"},
            {"rel": "delete", "href": href, "method": "DELETE"},
        ],
    }


def register_hook_routes(mc: MailchimpStandIn, app: Flask) -> None:
    hooks = "/3.0/lists/<list_id>/webhooks"

    @app.get(hooks)
    def _hooks(list_id: str) -> Response:
        with mc.lock:
            docs = [render_hook(mc, h) for h in mc.get_list(list_id)["_webhooks"].values()]
        return json_response(projected({"webhooks": docs, "list_id": list_id, "total_items": len(docs)}))

    @app.post(hooks)
    def _add_hook(list_id: str) -> Response:
        spec = check_hook(json_body())
        with mc.lock:
            if any(h["url"] == spec["url"] for h in mc.get_list(list_id)["_webhooks"].values()):
                raise invalid("This URL is already a webhook of this list.")
        failure = probe(spec["url"], mc.probe_timeout)  # outside the lock: it may be slow
        if failure:
            raise invalid(errors=[{"field": "url", "message": failure}])
        with mc.lock:
            lst = mc.get_list(list_id)
            hook = {"id": secrets.token_hex(5), **spec, "list_id": list_id}
            lst["_webhooks"][hook["id"]] = hook
            mc.changed()
            return json_response(render_hook(mc, hook))

    @app.get(hooks + "/<hook_id>")
    def _hook(list_id: str, hook_id: str) -> Response:
        with mc.lock:
            hook = mc.get_list(list_id)["_webhooks"].get(hook_id)
            if hook is None:
                raise not_found()
            return json_response(projected(render_hook(mc, hook)))

    @app.delete(hooks + "/<hook_id>")
    def _delete_hook(list_id: str, hook_id: str) -> Response:
        with mc.lock:
            if mc.get_list(list_id)["_webhooks"].pop(hook_id, None) is None:
                raise not_found()
            mc.changed()
        return no_content()

    register_simulations(mc, app)


def register_simulations(mc: MailchimpStandIn, app: Flask) -> None:
    """Admin routes for what contacts and campaigns do outside the API (default source: user)."""
    base = "/_sandbox/lists/<list_id>"

    def _source(body: dict[str, Any]) -> str:
        source = body.get("source", "user")
        if source not in SOURCES:
            raise invalid(errors=[{"field": "source", "message": f"source must be one of {', '.join(SOURCES)}"}])
        return str(source)

    @app.post(base + "/signup")
    def _signup(list_id: str) -> Response:
        body = json_body()
        email = check_email(body.get("email_address"))
        with mc.lock:
            lst, h, now = mc.get_list(list_id), subscriber_hash(email), mc.now()
            if h in lst["_forgotten"]:  # the contact may come back by signing up themselves
                lst["_forgotten"].remove(h)
            member = lst["_members"].get(h)
            if member is None or member["status"] == "archived":
                member = new_member(
                    lst,
                    email,
                    body,
                    "subscribed",
                    now=now,
                    web_id=mc.next_web_id(),
                    ip=request.remote_addr or "",
                    skip_required=False,
                )
                member["source"] = "Hosted Signup Form"
                lst["_members"][h] = member
            else:
                update_member(
                    lst,
                    member,
                    {"merge_fields": body.get("merge_fields") or {}},
                    now=now,
                    ip="",
                    skip_required=False,
                )
                set_status(member, "subscribed", now=now, ip=request.remote_addr or "")
            mc.fire(lst, "subscribe", _source(body), member)
            mc.changed()
            return json_response(render(member, mc.base_url()))

    @app.post(base + "/members/<key>/unsubscribe")
    def _unsubscribe(list_id: str, key: str) -> Response:
        body = json_body()
        with mc.lock:
            lst = mc.get_list(list_id)
            member, source = live_member(lst, key), _source(body)
            set_status(member, "unsubscribed", now=mc.now(), reason=str(body.get("reason", "manual")))
            member["_user_unsubscribed"] = source == "user"
            mc.fire(
                lst,
                "unsubscribe",
                source,
                member,
                {
                    "action": "unsub",
                    "reason": body.get("reason", "manual"),
                    "campaign_id": body.get("campaign_id", ""),
                },
            )
            mc.changed()
            return json_response(render(member, mc.base_url()))

    @app.post(base + "/members/<key>/clean")
    def _clean(list_id: str, key: str) -> Response:
        body = json_body()
        reason = body.get("reason", "hard")
        if reason not in ("hard", "abuse"):
            raise invalid(errors=[{"field": "reason", "message": "reason must be hard or abuse"}])
        with mc.lock:
            lst = mc.get_list(list_id)
            member = live_member(lst, key)
            set_status(member, "cleaned", now=mc.now())
            mc.fire(
                lst,
                "cleaned",
                _source(body),
                member,
                {"reason": reason, "campaign_id": body.get("campaign_id", "")},
            )
            mc.changed()
            return json_response(render(member, mc.base_url()))

    @app.post(base + "/members/<key>/profile")
    def _profile(list_id: str, key: str) -> Response:
        body = json_body()
        with mc.lock:
            lst = mc.get_list(list_id)
            member, source = live_member(lst, key), _source(body)
            email = body.get("email_address")
            moving = email is not None and subscriber_hash(check_email(email)) != member["id"]
            if moving:
                check_new_email(lst, email)
            changed = update_member(
                lst,
                member,
                {"merge_fields": body.get("merge_fields") or {}},
                now=mc.now(),
                ip="",
                skip_required=False,
            )
            if changed:
                mc.fire(lst, "profile", source, member)
            if moving:
                change_email(mc, lst, member, email, source)
            mc.changed()
            return json_response(render(member, mc.base_url()))

    @app.post(base + "/campaign")
    def _campaign(list_id: str) -> Response:
        body = json_body()
        with mc.lock:
            lst = mc.get_list(list_id)
            extra = {
                "id": body.get("id") or secrets.token_hex(5),
                "subject": str(body.get("subject", "")),
                "status": str(body.get("status", "sent")),
                "reason": str(body.get("reason", "")),
            }
            mc.fire(lst, "campaign", "admin", None, extra)
        return json_response(extra)
