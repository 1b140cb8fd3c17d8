"""The HubSpot stand-in's vocabulary: object types and their names, HubSpot's error shape, batch
input limits, and how a written property value is checked and normalised.

Facts here come from HubSpot's public docs and hubspot-api-client 12's generated models; the
tests in tests/sandbox/test_hubspot.py pin the ones the hub relies on.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PORTAL_ID = 1234567


class ApiError(Exception):
    """A HubSpot error response: ``{"status": "error", "message", "correlationId", "category", ...}``."""

    def __init__(self, status: int, message: str, category: str = "VALIDATION_ERROR", **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.category = category
        self.extra = extra

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "error", "message": self.message, "correlationId": str(uuid.uuid4())}
        out.update(self.extra)
        if self.category:
            out["category"] = self.category
        return out


def property_errors(problems: list[dict[str, Any]], portal_id: int = PORTAL_ID) -> ApiError:
    """HubSpot's 400 for bad property values: the details are JSON nested inside ``message``."""
    for p in problems:
        p.setdefault("isValid", False)
        p.setdefault("localizedErrorMessage", p["message"])
        p.setdefault("portalId", portal_id)
    return ApiError(400, "Property values were not valid: " + json.dumps(problems, separators=(",", ":")))


BATCH_MAX = 100


def batch_inputs(data: dict[str, Any]) -> list[Any]:
    """``inputs`` of a batch body, refused past HubSpot's 100 with HubSpot's own message."""
    items = data.get("inputs")
    if not isinstance(items, list):
        raise ApiError(400, "Invalid input JSON: inputs must be a list")
    if len(items) > BATCH_MAX:
        raise ApiError(
            400,
            f"The maximum number of inputs supported in a batch is {BATCH_MAX}. "
            "Please reduce the number of items and try again",
        )
    return items


def problem(name: str, code: str, message: str) -> dict[str, Any]:
    return {"isValid": False, "message": message, "error": code, "name": name}


@dataclass(frozen=True)
class ObjectType:
    name: str  # plural API name
    type_id: str  # "0-1" ...
    singular: str
    modified: str  # the last-modified property the search index keeps
    defaults: tuple[str, ...]  # properties returned when none are asked for
    group: str  # the built-in property group
    searchable: tuple[str, ...] = ()  # what a free-text ``query`` looks at


_BASE = ("createdate", "hs_object_id")
TYPES: dict[str, ObjectType] = {
    t.name: t
    for t in (
        ObjectType(
            "contacts",
            "0-1",
            "contact",
            "lastmodifieddate",
            (*_BASE, "email", "firstname", "lastname", "lastmodifieddate"),
            "contactinformation",
            ("firstname", "lastname", "email", "phone", "mobilephone", "company"),
        ),
        ObjectType(
            "companies",
            "0-2",
            "company",
            "hs_lastmodifieddate",
            (*_BASE, "domain", "name", "hs_lastmodifieddate"),
            "companyinformation",
            ("name", "domain", "phone", "website"),
        ),
        ObjectType(
            "deals",
            "0-3",
            "deal",
            "hs_lastmodifieddate",
            (*_BASE, "amount", "closedate", "dealname", "dealstage", "pipeline", "hs_lastmodifieddate"),
            "dealinformation",
            ("dealname", "description"),
        ),
        ObjectType(
            "tickets",
            "0-5",
            "ticket",
            "hs_lastmodifieddate",
            (
                *_BASE,
                "content",
                "hs_pipeline",
                "hs_pipeline_stage",
                "hs_ticket_category",
                "hs_ticket_priority",
                "subject",
                "hs_lastmodifieddate",
            ),
            "ticketinformation",
            ("subject", "content"),
        ),
        ObjectType(
            "tasks",
            "0-27",
            "task",
            "hs_lastmodifieddate",
            (*_BASE, "hs_lastmodifieddate"),
            "taskinformation",
            ("hs_task_subject", "hs_task_body"),
        ),
        ObjectType(
            "notes",
            "0-46",
            "note",
            "hs_lastmodifieddate",
            (*_BASE, "hs_lastmodifieddate"),
            "noteinformation",
            ("hs_note_body",),
        ),
    )
}
_ALIASES = {alias: t for t in TYPES.values() for alias in (t.name, t.singular, t.type_id)}
WEBHOOK_TYPES = ("contacts", "companies", "deals", "tickets")  # objects with v3 webhook events


def resolve_type(raw: str) -> ObjectType:
    """Object type from its API name, singular name or ``0-N`` id (HubSpot accepts all three)."""
    found = _ALIASES.get(raw.lower())
    if found is None:
        raise ApiError(400, f"Unable to infer object type from: {raw}")
    return found


# -- values ---------------------------------------------------------------------------------------
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}(T.*)?$")


def to_ms(raw: Any) -> int | None:
    """Epoch milliseconds from HubSpot's accepted date inputs: epoch ms, ``YYYY-MM-DD`` or ISO 8601."""
    text = str(raw).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if not _ISO.match(text):
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def iso_ms(ms: int) -> str:
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def coerce(obj_type: str, prop: dict[str, Any], raw: Any) -> tuple[str | None, dict[str, Any] | None]:
    """(stored value, problem) for one written value; ``""``/None clears the property."""
    name, ptype = prop["name"], prop["type"]
    if raw is None or (isinstance(raw, str) and raw == ""):
        return None, None
    text = str(raw).strip() if not isinstance(raw, bool) else ("true" if raw else "false")
    if ptype == "number":
        try:
            float(text)
        except ValueError:
            return None, problem(name, "INVALID_FLOAT", f"{text} was not a valid number.")
        return text, None
    if ptype in ("date", "datetime"):
        ms = to_ms(text)
        if ms is None:
            return None, problem(name, "INVALID_DATE", f"{text} is not a valid date or epoch millisecond value.")
        if ptype == "date":
            if ms % 86_400_000:
                return None, problem(name, "INVALID_DATE", f"{text} is not midnight UTC, as a date property requires.")
            return iso_ms(ms)[:10], None
        return iso_ms(ms), None
    if ptype == "bool":
        low = text.lower()
        if low not in ("true", "false"):
            return None, problem(name, "INVALID_BOOLEAN", f"{text} was not a valid boolean (true or false).")
        return low, None
    if ptype == "enumeration" and prop["options"]:
        allowed = [o["value"] for o in prop["options"]]
        parts = text.split(";") if prop.get("fieldType") == "checkbox" else [text]
        bad = [p for p in parts if p not in allowed]
        if bad:
            return None, problem(
                name, "INVALID_OPTION", f"{bad[0]} was not one of the allowed options: [{', '.join(allowed)}]"
            )
        return text, None
    if obj_type == "contacts" and name == "email":
        if not _EMAIL.match(text):
            return None, problem(name, "INVALID_EMAIL", f"Email address {text} is invalid")
        return text.lower(), None
    return str(raw), None
