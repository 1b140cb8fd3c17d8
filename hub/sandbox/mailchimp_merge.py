"""Merge fields of the Mailchimp stand-in: definitions (types, tags, options) and the validation
of member values against them, the source of "Your merge fields were invalid." errors."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from hub.sandbox.mailchimp_model import (
    MAX_TAG_LENGTH,
    MAX_TEXT_LENGTH,
    MERGE_TAG,
    MERGE_TYPES,
    PHONE,
    invalid,
)

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
    specs = [
        ("FNAME", "First Name", "text"),
        ("LNAME", "Last Name", "text"),
        ("ADDRESS", "Address", "address"),
        ("PHONE", "Phone Number", "phone"),
        ("BIRTHDAY", "Birthday", "birthday"),
    ]
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
