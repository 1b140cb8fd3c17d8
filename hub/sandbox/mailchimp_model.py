"""The audience rules the Mailchimp stand-in enforces, as pure functions over JSON-able dicts:
subscriber hashes, merge field definitions and values, member documents, tag and event names,
and the ``fields``/``exclude_fields`` projection every GET accepts.

Kept apart from the routes so the rules read in one place and the routes stay thin.
"""

from __future__ import annotations

import calendar
import hashlib
import re
import secrets
import time
from datetime import datetime, timezone
from typing import Any

ERROR_TYPE = "https://mailchimp.com/developer/marketing/docs/errors/"
INVALID_DETAIL = "The resource submitted could not be validated. For field-specific details, see the 'errors' array."
MEMBER_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
MERGE_TYPES = ("text", "number", "address", "phone", "date", "url", "imageurl", "radio", "dropdown", "birthday", "zip")
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
def stamp(t: float) -> str:
    """Mailchimp's timestamps: ISO 8601, whole seconds, ``+00:00``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t))


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
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def stamp_value(value: str) -> float:
    """Epoch seconds of one of our own stamps (empty → 0)."""
    return float(calendar.timegm(time.strptime(value[:19], "%Y-%m-%dT%H:%M:%S"))) if value else 0.0


# -- merge fields -------------------------------------------------------------------------------
_DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "text": {"size": 25},
    "date": {"date_format": "MM/DD/YYYY"},
    "birthday": {"date_format": "MM/DD"},
    "phone": {"phone_format": "none"},
    "address": {"default_country": 164},
    "dropdown": {"choices": []},
    "radio": {"choices": []},
}


def new_merge_field(list_id: str, merge_id: int, body: Any, existing: list[dict[str, Any]]) -> dict[str, Any]:
    """Validate a merge field definition (POST body) and return the stored field."""
    if not isinstance(body, dict):
        raise invalid(errors=[{"field": "", "message": "The request body must be a JSON object."}])
    errors = []
    name, ftype = body.get("name"), body.get("type")
    if not isinstance(name, str) or not name.strip():
        errors.append({"field": "name", "message": "This value should not be blank."})
    if ftype not in MERGE_TYPES:
        errors.append({"field": "type", "message": f"Value must be one of: {', '.join(MERGE_TYPES)}."})
    tag = body.get("tag") or f"MMERGE{merge_id}"
    tag = tag.upper() if isinstance(tag, str) else tag
    if not isinstance(tag, str) or not MERGE_TAG.match(tag):
        errors.append({"field": "tag", "message": f"Merge tags are 1-{MAX_TAG_LENGTH} letters, digits or _."})
    elif tag == "EMAIL" or any(f["tag"] == tag for f in existing):
        raise invalid(f'A Merge Field with the tag "{tag}" already exists for this list.')
    options = dict(_DEFAULT_OPTIONS.get(str(ftype), {}))
    given = body.get("options") or {}
    if not isinstance(given, dict):
        errors.append({"field": "options", "message": "Options must be an object."})
    else:
        options.update(given)
    if ftype in ("dropdown", "radio") and not options.get("choices"):
        errors.append({"field": "options.choices", "message": "Dropdown and radio fields need choices."})
    if errors:
        raise invalid(errors=errors)
    return {
        "merge_id": merge_id,
        "tag": tag,
        "name": name.strip(),
        "type": ftype,
        "required": bool(body.get("required", False)),
        "default_value": str(body.get("default_value", "")),
        "public": bool(body.get("public", True)),
        "display_order": int(body.get("display_order", merge_id + 1)),
        "options": options,
        "help_text": str(body.get("help_text", "")),
        "list_id": list_id,
    }


def default_merge_fields(list_id: str) -> list[dict[str, Any]]:
    """The fields a new Mailchimp audience starts with."""
    specs = [("FNAME", "First Name", "text"), ("LNAME", "Last Name", "text"), ("ADDRESS", "Address", "address"),
             ("PHONE", "Phone Number", "phone"), ("BIRTHDAY", "Birthday", "birthday")]
    fields: list[dict[str, Any]] = []
    for i, (tag, name, ftype) in enumerate(specs, start=1):
        fields.append(new_merge_field(list_id, i, {"tag": tag, "name": name, "type": ftype}, fields))
    return fields


def _check_date(value: str, fmt: str) -> str | None:
    """The ISO form of ``value`` (accepted as YYYY-MM-DD or in the field's format), or None."""
    patterns = ["%Y-%m-%d", fmt.replace("MM", "%m").replace("DD", "%d").replace("YYYY", "%Y")]
    for pattern in patterns:
        try:
            return datetime.strptime(value, pattern).strftime("%Y-%m-%d")
        except ValueError:
            continue
    return None


def _check_value(field: dict[str, Any], value: Any) -> tuple[Any, str | None]:
    """(clean value, error message) for one merge value."""
    ftype, opts = field["type"], field["options"]
    if value is None or value == "":
        return "", None
    if ftype == "address":
        if isinstance(value, dict) and all(str(value.get(k, "")).strip() for k in ("addr1", "city", "state", "zip")):
            keys = ("addr1", "addr2", "city", "state", "zip", "country")
            return {k: str(value.get(k, "")) for k in keys}, None
        return None, "Please enter a complete address"
    if isinstance(value, (dict, list, bool)):
        return None, "Please enter a value of the field's type"
    text = str(value)
    if ftype == "number":
        try:
            float(text)
        except ValueError:
            return None, "Please enter a number"
        return value if isinstance(value, (int, float)) else text, None
    if ftype == "text":
        ok = len(text) <= MAX_TEXT_LENGTH
        return (text, None) if ok else (None, f"Please enter a value under {MAX_TEXT_LENGTH} characters")
    if ftype == "date":
        iso = _check_date(text, str(opts.get("date_format", "MM/DD/YYYY")))
        return (iso, None) if iso else (None, "Please enter the date")
    if ftype == "birthday":
        ok = re.match(r"^(0[1-9]|1[0-2])/(0[1-9]|[12]\d|3[01])$", text)
        return (text, None) if ok else (None, "Please enter a month (01-12) and a day (01-31)")
    if ftype == "phone":
        return (text, None) if PHONE.match(text) else (None, "Please enter a valid phone number")
    if ftype in ("url", "imageurl"):
        ok = text.startswith(("http://", "https://"))
        return (text, None) if ok else (None, "Please enter a valid URL (http:// or https://)")
    if ftype == "zip":
        return (text, None) if re.match(r"^\d{5}$", text) else (None, "Please enter a 5 digit zip code")
    choices = [str(c) for c in opts.get("choices", [])]
    return (text, None) if text in choices else (None, f"Please choose one of: {', '.join(choices)}")


def check_merge_values(
    defs: list[dict[str, Any]], values: Any, *, current: dict[str, Any] | None, skip_required: bool
) -> dict[str, Any]:
    """Merge ``values`` over ``current`` (None for a new member) or raise an "Invalid Resource"
    naming every bad tag: unknown tags, values of the wrong type, required fields left empty."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise invalid(errors=[{"field": "merge_fields", "message": "merge_fields must be an object."}])
    by_tag = {f["tag"]: f for f in defs}
    merged = dict(current) if current is not None else {f["tag"]: f["default_value"] for f in defs}
    errors = []
    for tag, value in values.items():
        field = by_tag.get(str(tag).upper())
        if field is None:
            errors.append({"field": str(tag), "message": "This merge field does not exist in the audience."})
            continue
        clean, message = _check_value(field, value)
        if message:
            errors.append({"field": field["tag"], "message": message})
        else:
            merged[field["tag"]] = clean
    if not skip_required:
        for f in defs:
            if f["required"] and merged.get(f["tag"]) in (None, ""):
                errors.append({"field": f["tag"], "message": "Please enter a value"})
    if errors:
        raise invalid("Your merge fields were invalid.", errors)
    return merged


# -- members ------------------------------------------------------------------------------------
def _check_member_options(body: dict[str, Any]) -> None:
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


def new_member(lst: dict[str, Any], email: str, body: dict[str, Any], status: str, *, now: float,
               web_id: int, ip: str, skip_required: bool) -> dict[str, Any]:
    """A member document as Mailchimp returns it, plus internal ``_``-prefixed bookkeeping."""
    _check_member_options(body)
    merges = check_merge_values(lst["_merge_fields"], body.get("merge_fields"), current=None,
                                skip_required=skip_required)
    subscribed = status == "subscribed"
    member = {
        "id": subscriber_hash(email),
        "email_address": email,
        "unique_email_id": secrets.token_hex(5),
        "contact_id": secrets.token_hex(16),
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
        "timestamp_opt": stamp(now) if subscribed else "",
        "member_rating": 2,
        "last_changed": stamp(now),
        "language": body.get("language", ""),
        "vip": body.get("vip", False),
        "email_client": "",
        "location": {"latitude": 0, "longitude": 0, "gmtoff": 0, "dstoff": 0, "country_code": "", "timezone": "",
                     "region": ""},
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


def update_member(lst: dict[str, Any], member: dict[str, Any], body: dict[str, Any], *, now: float, ip: str,
                  skip_required: bool) -> set[str]:
    """Apply an update body in place; returns what changed: ``status`` and/or ``profile``."""
    _check_member_options(body)
    changed: set[str] = set()
    if "merge_fields" in body:
        merges = check_merge_values(lst["_merge_fields"], body["merge_fields"], current=member["merge_fields"],
                                    skip_required=skip_required)
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
    doc = {k: v for k, v in member.items() if not k.startswith("_")}
    doc["tags"] = [{"id": t["id"], "name": t["name"]} for t in member["tags"]]
    doc["tags_count"] = len(member["tags"])
    href = f"{base}/lists/{member['list_id']}/members/{member['id']}"
    doc["_links"] = [{"rel": "self", "href": href, "method": "GET"}, {"rel": "update", "href": href, "method": "PATCH"},
                     {"rel": "upsert", "href": href, "method": "PUT"}, {"rel": "delete", "href": href, "method": "DELETE"}]
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
    return {"name": name, "occurred_at": when, "properties": dict(props), "is_syncing": bool(body.get("is_syncing"))}


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


# -- fields / exclude_fields ------------------------------------------------------------------
def _tree(paths: str) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in paths.split(","):
        node = tree
        for part in [p for p in path.strip().split(".") if p]:
            node = node.setdefault(part, {})
    return tree


def _pick(value: Any, tree: dict[str, Any]) -> Any:
    if not tree:
        return value
    if isinstance(value, list):
        return [_pick(v, tree) for v in value]
    if isinstance(value, dict):
        return {k: _pick(value[k], sub) for k, sub in tree.items() if k in value}
    return value


def _drop(value: Any, tree: dict[str, Any]) -> Any:
    if isinstance(value, list):
        return [_drop(v, tree) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for k, v in value.items():
        if k in tree:
            if not tree[k]:
                continue
            v = _drop(v, tree[k])
        out[k] = v
    return out


def project(doc: dict[str, Any], fields: str | None, exclude: str | None) -> dict[str, Any]:
    """Apply Mailchimp's ``fields``/``exclude_fields`` (comma-separated, dot notation)."""
    if fields:
        doc = _pick(doc, _tree(fields))
    if exclude:
        doc = _drop(doc, _tree(exclude))
    return doc
