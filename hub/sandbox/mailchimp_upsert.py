"""How the Mailchimp stand-in writes members: create vs update, the compliance rules (forgotten
addresses, cleaned or self-unsubscribed contacts), email changes, tags, and which webhooks a
change fires."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from flask import request

from hub.sandbox.mailchimp_merge import check_merge_values
from hub.sandbox.mailchimp_model import (
    Problem,
    check_email,
    check_member_options,
    invalid,
    not_found,
    set_status,
    stamp,
    subscriber_hash,
    tag_names,
)

if TYPE_CHECKING:
    from hub.sandbox.mailchimp import MailchimpStandIn

# Ids of a stand-in only need to be unique, not secret: no system call per member (os.urandom).
_IDS = random.Random()


def new_member(
    lst: dict[str, Any],
    email: str,
    body: dict[str, Any],
    status: str,
    *,
    now: float,
    web_id: int,
    ip: str,
    skip_required: bool,
    member_id: str | None = None,
) -> dict[str, Any]:
    """A member document as Mailchimp returns it, plus internal ``_``-prefixed bookkeeping.
    ``member_id``: the email's subscriber hash, when the caller has it already."""
    check_member_options(body)
    merges = check_merge_values(
        lst["_merge_fields"], body.get("merge_fields"), current=None, skip_required=skip_required
    )
    subscribed = status == "subscribed"
    at = stamp(now)
    member = {
        "id": member_id or subscriber_hash(email),
        "email_address": email,
        "unique_email_id": f"{_IDS.getrandbits(40):010x}",
        "contact_id": f"{_IDS.getrandbits(128):032x}",
        "full_name": "",
        "web_id": web_id,
        "email_type": body.get("email_type", "html"),
        "status": status,
        "consents_to_one_to_one_messaging": True,
        "merge_fields": merges,
        "stats": {"avg_open_rate": 0, "avg_click_rate": 0},
        "ip_signup": str(body.get("ip_signup", "")),
        "timestamp_signup": str(body.get("timestamp_signup", "")),
        "ip_opt": ip if subscribed else "",
        "timestamp_opt": at if subscribed else "",
        "member_rating": 2,
        "last_changed": at,
        "language": body.get("language", ""),
        "vip": body.get("vip", False),
        "email_client": "",
        "location": {
            "latitude": 0,
            "longitude": 0,
            "gmtoff": 0,
            "dstoff": 0,
            "country_code": "",
            "timezone": "",
            "region": "",
        },
        "source": "API - Generic",
        "tags_count": 0,
        "tags": [],
        "list_id": lst["id"],
        "_user_unsubscribed": False,
        "_events": [],
    }
    member["full_name"] = _full_name(merges)
    return member


def _full_name(merges: dict[str, Any]) -> str:
    return " ".join(str(merges.get(k, "")).strip() for k in ("FNAME", "LNAME") if merges.get(k)).strip()


def update_member(
    lst: dict[str, Any],
    member: dict[str, Any],
    body: dict[str, Any],
    *,
    now: float,
    ip: str,
    skip_required: bool,
) -> set[str]:
    """Apply an update body in place; returns what changed: ``status`` and/or ``profile``."""
    check_member_options(body)
    changed: set[str] = set()
    if "merge_fields" in body:
        merges = check_merge_values(
            lst["_merge_fields"],
            body["merge_fields"],
            current=member["merge_fields"],
            skip_required=skip_required,
        )
        if merges != member["merge_fields"]:
            member["merge_fields"] = merges
            member["full_name"] = _full_name(merges)
            changed.add("profile")
    for key in ("email_type", "language", "vip"):
        if key in body and body[key] != member[key]:
            member[key] = body[key]
            changed.add("profile")
    status = body.get("status")
    if status and status != member["status"]:
        set_status(member, status, now=now, ip=ip)
        changed.add("status")
    if changed:
        member["last_changed"] = stamp(now)
    return changed


def member_exists(email: str) -> Problem:
    return Problem(400, "Member Exists", f"{email} is already a list member. Use PUT to insert or update list members.")


def forgotten(email: str) -> Problem:
    return Problem(
        400,
        "Forgotten Email Not Subscribed",
        f"{email} was permanently deleted and cannot be "
        "re-imported. The contact must re-subscribe to get back on the list.",
    )


def compliance(email: str) -> Problem:
    return Problem(
        400,
        "Member In Compliance State",
        f"{email} is in a compliance state due to unsubscribe, bounce, or compliance review and cannot be subscribed.",
    )


def member_key(key: str) -> str:
    """Routes accept the subscriber hash or the email address itself."""
    return subscriber_hash(key) if "@" in key else key.lower()


def live_member(lst: dict[str, Any], key: str) -> dict[str, Any]:
    member = lst["_members"].get(member_key(key))
    if member is None or member["status"] == "archived":
        raise not_found()
    return member


def check_status_change(member: dict[str, Any], status: str | None) -> None:
    """Cleaned addresses and contacts who unsubscribed themselves can't be re-subscribed by API."""
    if status == "subscribed" and (member["status"] == "cleaned" or member["_user_unsubscribed"]):
        raise compliance(member["email_address"])
    if status == "pending" and member["status"] == "cleaned":
        raise compliance(member["email_address"])


def status_events(
    mc: MailchimpStandIn,
    lst: dict[str, Any],
    member: dict[str, Any],
    before: str | None,
    changed: set[str],
    source: str,
) -> None:
    """Fire the webhooks a change deserves: subscribe, unsubscribe, cleaned, profile."""
    status = member["status"]
    if status != before:
        if status == "subscribed":
            mc.fire(lst, "subscribe", source, member)
        elif status == "unsubscribed" and before is not None:
            mc.fire(lst, "unsubscribe", source, member, {"action": "unsub", "reason": "manual"})
        elif status == "cleaned" and before is not None:
            mc.fire(lst, "cleaned", source, member, {"reason": "hard"})
    if "profile" in changed and before is not None:
        mc.fire(lst, "profile", source, member)


def upsert(
    mc: MailchimpStandIn,
    lst: dict[str, Any],
    key: str | None,
    body: dict[str, Any],
    *,
    mode: str,
    update_existing: bool = True,
    skip_required: bool = False,
    at: tuple[float, str] | None = None,
) -> tuple[dict[str, Any], bool]:
    """Create or update one member (``mode``: put, post or batch); returns (member, created).
    ``at``: the request's time and client address, when a batch has read them once for all."""
    email = body.get("email_address")
    if email is not None:
        check_email(email)
    h = subscriber_hash(email) if email is not None else None
    existing = lst["_members"].get(member_key(key) if key else h or "")
    if mode == "put" and h is not None and key is not None and h != member_key(key):
        other = lst["_members"].get(h)
        if other is not None and other["status"] != "archived":
            raise member_exists(email)
        raise invalid(
            errors=[
                {
                    "field": "email_address",
                    "message": "The email address does not match the subscriber hash in the URL.",
                }
            ]
        )
    if h is None:
        if mode == "put" and existing is not None and existing["status"] != "archived":
            h = existing["id"]
        else:
            raise invalid(errors=[{"field": "email_address", "message": "This value should not be blank."}])
    email = email if email is not None else existing["email_address"]
    if h in lst["_forgotten"]:
        raise forgotten(email)
    now, ip = at or (mc.now(), request.remote_addr or "")
    if existing is not None and existing["status"] != "archived":
        if mode == "post" or (mode == "batch" and not update_existing):
            raise member_exists(email)
        check_status_change(existing, body.get("status"))
        before = existing["status"]
        changed = update_member(lst, existing, body, now=now, ip=ip, skip_required=skip_required)
        status_events(mc, lst, existing, before, changed, "api")
        return existing, False
    field = "status_if_new" if mode == "put" else "status"
    status = body.get(field) or (body.get("status_if_new") if mode == "batch" else None)
    if not status:
        raise invalid(errors=[{"field": field, "message": "This value should not be blank."}])
    member = new_member(
        lst, email, body, status, now=now, web_id=mc.next_web_id(), ip=ip, skip_required=skip_required, member_id=h
    )
    add_tags(lst, member, [(name, True) for name in tag_names(body.get("tags"))], now)
    lst["_members"][h] = member
    status_events(mc, lst, member, None, set(), "api")
    return member, True


def add_tags(lst: dict[str, Any], member: dict[str, Any], updates: list[tuple[str, bool]], now: float) -> bool:
    """Apply (name, active) pairs; tags are created on the fly. Returns whether anything changed."""
    changed = False
    for name, active in updates:
        present = [t for t in member["tags"] if t["name"] == name]
        if active and not present:
            if name not in lst["_tag_ids"]:
                lst["_tag_ids"][name] = lst["_next_tag_id"]
                lst["_next_tag_id"] += 1
            member["tags"].append({"id": lst["_tag_ids"][name], "name": name, "date_added": stamp(now)})
            changed = True
        elif not active and present:
            member["tags"] = [t for t in member["tags"] if t["name"] != name]
            changed = True
    return changed


def batch_error(email: Any, exc: Problem) -> dict[str, Any]:
    """One entry of a batch's ``errors``: ERROR_CONTACT_EXISTS or ERROR_GENERIC, with the field."""
    entry: dict[str, Any] = {
        "email_address": email if isinstance(email, str) else "",
        "error": exc.detail
        if exc.title != "Member Exists"
        else f"{email} is already a list member, "
        "do you want to update? please provide update_existing:true in the request body",
        "error_code": "ERROR_CONTACT_EXISTS" if exc.title == "Member Exists" else "ERROR_GENERIC",
    }
    if exc.errors:
        entry["field"] = exc.errors[0]["field"]
        entry["field_message"] = exc.errors[0]["message"]
        entry["error"] = f"{exc.detail} " + "; ".join(f"{e['field']}: {e['message']}" for e in exc.errors)
    return entry


def check_new_email(lst: dict[str, Any], email: str) -> None:
    """Raise unless a member may move to ``email`` (checked before anything changes)."""
    new_id = subscriber_hash(email)
    other = lst["_members"].get(new_id)
    if other is not None and other["status"] != "archived":
        raise member_exists(email)
    if new_id in lst["_forgotten"]:
        raise forgotten(email)


def change_email(mc: MailchimpStandIn, lst: dict[str, Any], member: dict[str, Any], email: str, source: str) -> None:
    """Re-key a member under its new address (its id is the hash) and fire ``upemail``."""
    check_new_email(lst, email)
    new_id = subscriber_hash(email)
    old_id, old_email = member["id"], member["email_address"]
    del lst["_members"][old_id]
    member["id"], member["email_address"] = new_id, email
    member["last_changed"] = stamp(mc.now())
    lst["_members"][new_id] = member
    mc.fire(
        lst,
        "upemail",
        source,
        member,
        {"old_email": old_email, "new_email": email, "new_id": new_id, "old_id": old_id},
    )
