"""Shared vocabulary of the Mailchimp stand-in, as pure functions over JSON-able dicts: the
problem-detail error, limits, subscriber hashes, Mailchimp's time formats, member statuses and
rendering, tag and event validation.

Kept apart from the routes so the rules read in one place and the routes stay thin.
"""

from __future__ import annotations

import calendar
import hashlib
import math
import re
import time
from datetime import UTC, datetime
from typing import Any

ERROR_TYPE = "https://mailchimp.com/developer/marketing/docs/errors/"
INVALID_DETAIL = "The resource submitted could not be validated. For field-specific details, see the 'errors' array."
MEMBER_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
MERGE_TYPES = (
    "text",
    "number",
    "address",
    "phone",
    "date",
    "url",
    "imageurl",
    "radio",
    "dropdown",
    "birthday",
    "zip",
)
MAX_BATCH = 500  # members per batch subscribe request
MAX_COUNT = 1000  # items per page of a collection
MAX_TAG_LENGTH = 10  # merge tag
MAX_TEXT_LENGTH = 255  # text merge value
MAX_MEMBER_TAG_LENGTH = 100  # member tag name
EVENT_NAME = re.compile(r"^[A-Za-z0-9_-]{2,30}$")
MERGE_TAG = re.compile(r"^[A-Z0-9_]{1,10}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
PHONE = re.compile(r"^[0-9+()\-. x]{3,30}$")


class Problem(Exception):
    """An API error, rendered by the stand-in as ``application/problem+json``."""

    def __init__(self, status: int, title: str, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors


def not_found() -> Problem:
    return Problem(404, "Resource Not Found", "The requested resource could not be found.")


def invalid(detail: str = INVALID_DETAIL, errors: list[dict[str, str]] | None = None) -> Problem:
    return Problem(400, "Invalid Resource", detail, errors)


def subscriber_hash(email: str) -> str:
    """Mailchimp addresses members by the MD5 of the lowercased email address."""
    return hashlib.md5(email.lower().encode("utf-8")).hexdigest()


def check_email(email: Any) -> str:
    if not isinstance(email, str) or not EMAIL.match(email):
        raise invalid(f"{email} looks fake or invalid, please enter a real email address.")
    return email


# -- time ---------------------------------------------------------------------------------------
_stamped: tuple[int, str] = (0, "1970-01-01T00:00:00+00:00")  # the last second written: a batch is stamped by one


def stamp(t: float) -> str:
    """Mailchimp's timestamps: ISO 8601, whole seconds, ``+00:00``."""
    global _stamped
    second, cached = math.floor(t), _stamped  # read once: the stand-in's threads share it
    if cached[0] != second:
        cached = _stamped = (second, time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(second)))
    return cached[1]


def fired_at(t: float) -> str:
    """Webhook times: ``YYYY-MM-DD HH:MM:SS``."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def parse_time(value: str, param: str) -> float:
    """An ISO 8601 query parameter as epoch seconds (naive values are UTC)."""
    text = value.strip().replace("Z", "+00:00")
    if "T" in text and " " in text:  # an unencoded "+" in a query string arrives as a space
        text = text.replace(" ", "+")
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise Problem(400, "Bad Request", f"{param} must be an ISO 8601 time, got {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def stamp_value(value: str) -> float:
    """Epoch seconds of one of our own stamps (empty → 0)."""
    return float(calendar.timegm(time.strptime(value[:19], "%Y-%m-%dT%H:%M:%S"))) if value else 0.0


# -- members ------------------------------------------------------------------------------------
def check_member_options(body: dict[str, Any]) -> None:
    errors = []
    if "email_type" in body and body["email_type"] not in ("html", "text"):
        errors.append({"field": "email_type", "message": "email_type must be html or text."})
    if "vip" in body and not isinstance(body["vip"], bool):
        errors.append({"field": "vip", "message": "vip must be a boolean."})
    if "language" in body and not isinstance(body["language"], str):
        errors.append({"field": "language", "message": "language must be a string."})
    for key in ("status", "status_if_new"):
        if key in body and body[key] not in MEMBER_STATUSES:
            errors.append({"field": key, "message": f"{key} must be one of: {', '.join(MEMBER_STATUSES)}."})
    if errors:
        raise invalid(errors=errors)


def tag_names(tags: Any) -> list[str]:
    """Tags given on create: a list of names (strings)."""
    if tags is None:
        return []
    if not isinstance(tags, list) or not all(isinstance(t, str) and 0 < len(t) <= MAX_MEMBER_TAG_LENGTH for t in tags):
        raise invalid(errors=[{"field": "tags", "message": f"tags must be names of 1-{MAX_MEMBER_TAG_LENGTH} chars."}])
    return list(dict.fromkeys(tags))


def set_status(member: dict[str, Any], status: str, *, now: float, ip: str = "", reason: str = "") -> None:
    member["status"] = status
    member["last_changed"] = stamp(now)
    if status == "subscribed":
        member["timestamp_opt"], member["ip_opt"] = stamp(now), ip
        member["_user_unsubscribed"] = False
        member.pop("unsubscribe_reason", None)
    elif status == "unsubscribed":
        member["unsubscribe_reason"] = reason or "N/A (Unsubscribed by an admin)"


def render(member: dict[str, Any], base: str) -> dict[str, Any]:
    """The public JSON of a stored member (internal keys dropped, links added)."""
    doc = {k: v for k, v in member.items() if k[0] != "_"}
    doc["tags"] = [{"id": t["id"], "name": t["name"]} for t in member["tags"]]
    doc["tags_count"] = len(member["tags"])
    href = f"{base}/lists/{member['list_id']}/members/{member['id']}"
    doc["_links"] = [
        {"rel": "self", "href": href, "method": "GET"},
        {"rel": "update", "href": href, "method": "PATCH"},
        {"rel": "upsert", "href": href, "method": "PUT"},
        {"rel": "delete", "href": href, "method": "DELETE"},
    ]
    return doc


def check_event(body: Any, now: float) -> dict[str, Any]:
    """A member event body: name 2-30 letters, digits, ``_`` or ``-``; string properties."""
    if not isinstance(body, dict):
        raise invalid(errors=[{"field": "", "message": "The request body must be a JSON object."}])
    name, props = body.get("name"), body.get("properties") or {}
    errors = []
    if not isinstance(name, str) or not EVENT_NAME.match(name):
        errors.append({"field": "name", "message": "Event names are 2-30 letters, digits, _ or -."})
    if not isinstance(props, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in props.items()):
        errors.append({"field": "properties", "message": "properties must map names to strings."})
    if errors:
        raise invalid(errors=errors)
    occurred = body.get("occurred_at")
    when = stamp(parse_time(occurred, "occurred_at")) if isinstance(occurred, str) and occurred else stamp(now)
    return {
        "name": name,
        "occurred_at": when,
        "properties": dict(props),
        "is_syncing": bool(body.get("is_syncing")),
    }


def check_tag_updates(body: Any) -> list[tuple[str, bool]]:
    """``{"tags": [{"name", "status": "active|inactive"}]}`` as (name, active) pairs."""
    tags = body.get("tags") if isinstance(body, dict) else None
    if not isinstance(tags, list):
        raise invalid(errors=[{"field": "tags", "message": "tags must be a list of {name, status}."}])
    out = []
    for t in tags:
        name = t.get("name") if isinstance(t, dict) else None
        status = t.get("status") if isinstance(t, dict) else None
        if not isinstance(name, str) or not 0 < len(name.strip()) <= MAX_MEMBER_TAG_LENGTH:
            raise invalid(errors=[{"field": "tags.name", "message": f"Tag names are 1-{MAX_MEMBER_TAG_LENGTH} chars."}])
        if status not in ("active", "inactive"):
            raise invalid(errors=[{"field": "tags.status", "message": "Tag status must be active or inactive."}])
        out.append((name.strip(), status == "active"))
    return out
