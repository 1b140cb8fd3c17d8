"""What the HubSpot stand-in knows before anyone writes to it: object types, their built-in
properties, HubSpot-defined association types, default pipelines, HubSpot's error shape and
how a property value is checked and normalised.

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


# -- built-in properties ---------------------------------------------------------------------------
READ_ONLY = {"hs_object_id", "lastmodifieddate", "hs_lastmodifieddate"}
_FIELD_TYPES = {
    "string": "text",
    "number": "number",
    "date": "date",
    "datetime": "date",
    "enumeration": "select",
    "bool": "booleancheckbox",
}
LIFECYCLE = (
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
)


def _p(
    name: str, ptype: str = "string", options: tuple[str, ...] = (), field_type: str = ""
) -> dict[str, Any]:
    label = name.replace("hs_", "").replace("_", " ").capitalize()
    if ptype == "bool":
        options = ("true", "false")
    return {
        "name": name,
        "label": label,
        "type": ptype,
        "fieldType": field_type or _FIELD_TYPES[ptype],
        "description": "",
        "options": [
            {"label": o.replace("_", " ").capitalize(), "value": o, "displayOrder": i, "hidden": False}
            for i, o in enumerate(options)
        ],
        "hasUniqueValue": False,
        "hidden": False,
        "hubspotDefined": True,
        "calculated": False,
        "externalOptions": False,
        "formField": ptype != "datetime",
        "displayOrder": -1,
        "modificationMetadata": {
            "archivable": False,
            "readOnlyDefinition": True,
            "readOnlyValue": name in READ_ONLY,
        },
        "createdAt": "2019-08-06T02:41:08.029Z",
        "updatedAt": "2019-08-06T02:41:08.029Z",
        "archived": False,
    }


_COMMON = (_p("createdate", "datetime"), _p("hs_object_id", "number"), _p("hubspot_owner_id"))
_BUILTIN_LISTS: dict[str, tuple[dict[str, Any], ...]] = {
    # Contacts predate the hs_ prefix: "lastmodifieddate" is the one kept; hs_lastmodifieddate is
    # defined but never filled, so searching on it silently finds nothing, as on HubSpot.
    "contacts": (
        _p("email"),
        _p("firstname"),
        _p("lastname"),
        _p("phone"),
        _p("mobilephone"),
        _p("company"),
        _p("website"),
        _p("jobtitle"),
        _p("address"),
        _p("city"),
        _p("zip"),
        _p("country"),
        _p("lifecyclestage", "enumeration", LIFECYCLE, "radio"),
        _p(
            "hs_lead_status",
            "enumeration",
            (
                "NEW",
                "OPEN",
                "IN_PROGRESS",
                "OPEN_DEAL",
                "UNQUALIFIED",
                "ATTEMPTED_TO_CONTACT",
                "CONNECTED",
                "BAD_TIMING",
            ),
            "radio",
        ),
        _p("lastmodifieddate", "datetime"),
        _p("hs_lastmodifieddate", "datetime"),
    ),
    "companies": (
        _p("name"),
        _p("domain"),
        _p("phone"),
        _p("website"),
        _p("city"),
        _p("country"),
        _p("industry"),
        _p("description", field_type="textarea"),
        _p("numberofemployees", "number"),
        _p("annualrevenue", "number"),
        _p("lifecyclestage", "enumeration", LIFECYCLE, "radio"),
        _p("hs_lastmodifieddate", "datetime"),
    ),
    "deals": (
        _p("dealname"),
        _p("amount", "number"),
        _p("dealstage", "enumeration"),
        _p("pipeline", "enumeration"),
        _p("closedate", "datetime"),
        _p("dealtype", "enumeration", ("newbusiness", "existingbusiness"), "radio"),
        _p("description", field_type="textarea"),
        _p("hs_lastmodifieddate", "datetime"),
    ),
    "tickets": (
        _p("subject"),
        _p("content", field_type="textarea"),
        _p("hs_pipeline", "enumeration"),
        _p("hs_pipeline_stage", "enumeration"),
        _p("hs_ticket_priority", "enumeration", ("LOW", "MEDIUM", "HIGH", "URGENT")),
        _p(
            "hs_ticket_category",
            "enumeration",
            ("PRODUCT_ISSUE", "BILLING_ISSUE", "FEATURE_REQUEST", "GENERAL_INQUIRY"),
            "checkbox",
        ),
        _p("source_type", "enumeration", ("EMAIL", "PHONE", "CHAT", "FORM")),
        _p("hs_lastmodifieddate", "datetime"),
    ),
    "tasks": (
        _p("hs_task_subject"),
        _p("hs_task_body", field_type="textarea"),
        _p("hs_timestamp", "datetime"),
        _p(
            "hs_task_status",
            "enumeration",
            ("NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED"),
        ),
        _p("hs_task_priority", "enumeration", ("NONE", "LOW", "MEDIUM", "HIGH")),
        _p("hs_task_type", "enumeration", ("TODO", "CALL", "EMAIL")),
        _p("hs_lastmodifieddate", "datetime"),
    ),
    "notes": (
        _p("hs_note_body", field_type="textarea"),
        _p("hs_timestamp", "datetime"),
        _p("hs_lastmodifieddate", "datetime"),
    ),
}
BUILTIN_PROPERTIES: dict[str, dict[str, dict[str, Any]]] = {
    t: {p["name"]: {**p, "groupName": TYPES[t].group} for p in (*_COMMON, *props)}
    for t, props in _BUILTIN_LISTS.items()
}
REQUIRED_ON_CREATE = {
    "tickets": ("hs_pipeline_stage",),
    "tasks": ("hs_timestamp",),
    "notes": ("hs_timestamp",),
}
PIPELINE_PROPS = {"deals": ("pipeline", "dealstage"), "tickets": ("hs_pipeline", "hs_pipeline_stage")}
VALID_TYPES = {
    "string": {"text", "textarea", "phonenumber", "html", "file"},
    "number": {"number", "calculation_equation"},
    "date": {"date"},
    "datetime": {"date"},
    "bool": {"booleancheckbox", "checkbox"},
    "enumeration": {"select", "radio", "checkbox", "booleancheckbox"},
}

# -- associations (HubSpot-defined type ids, v4 docs "association type id values") ---------------
# (from, to): (default/unlabeled type, inverse type, primary type or None, inverse primary)
ASSOCIATIONS: dict[tuple[str, str], tuple[int, int]] = {
    ("contacts", "companies"): (279, 280),
    ("contacts", "deals"): (4, 3),
    ("contacts", "tickets"): (15, 16),
    ("contacts", "notes"): (201, 202),
    ("contacts", "tasks"): (203, 204),
    ("companies", "deals"): (342, 341),
    ("companies", "tickets"): (340, 339),
    ("companies", "notes"): (189, 190),
    ("companies", "tasks"): (191, 192),
    ("deals", "tickets"): (27, 28),
    ("deals", "notes"): (213, 214),
    ("deals", "tasks"): (215, 216),
    ("tickets", "notes"): (227, 228),
    ("tickets", "tasks"): (229, 230),
}
PRIMARY = {1: ("contacts", "companies", 2), 5: ("deals", "companies", 6), 26: ("tickets", "companies", 25)}
ASSOC_TYPES: dict[int, tuple[str, str, int, str | None]] = {}  # id -> (from, to, inverse, label)
for (_a, _b), (_fwd, _back) in ASSOCIATIONS.items():
    ASSOC_TYPES[_fwd] = (_a, _b, _back, None)
    ASSOC_TYPES[_back] = (_b, _a, _fwd, None)
for _id, (_a, _b, _inv) in PRIMARY.items():
    ASSOC_TYPES[_id] = (_a, _b, _inv, "Primary")
    ASSOC_TYPES[_inv] = (_b, _a, _id, "Primary")


def default_association(from_type: str, to_type: str) -> int:
    pair = ASSOCIATIONS.get((from_type, to_type))
    if pair is not None:
        return pair[0]
    back = ASSOCIATIONS.get((to_type, from_type))
    if back is not None:
        return back[1]
    raise ApiError(
        400,
        f"No default association type exists between {from_type} and {to_type}",
        subCategory="crm.associations.INVALID_ASSOCIATION_TYPE",
    )


def association_name(type_id: int) -> str:
    """v3 names for ``?associations=``: ``contact_to_company`` (primary) and ``..._unlabeled``."""
    src, dst, _, label = ASSOC_TYPES[type_id]
    name = f"{TYPES[src].singular}_to_{TYPES[dst].singular}"
    has_primary = any(a == src and b == dst for a, b, _, lab in ASSOC_TYPES.values() if lab)
    return name + ("_unlabeled" if has_primary and label is None else "")


# -- default pipelines ----------------------------------------------------------------------------
def _stage(sid: str, label: str, order: int, **meta: str) -> dict[str, Any]:
    return {
        "id": sid,
        "label": label,
        "displayOrder": order,
        "metadata": meta,
        "archived": False,
        "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
        "createdAt": "2019-08-06T02:41:08.029Z",
        "updatedAt": "2019-08-06T02:41:08.029Z",
    }


def default_pipelines() -> dict[str, dict[str, dict[str, Any]]]:
    """The pipelines every portal starts with: "Sales Pipeline" and "Support Pipeline"."""
    deal_stages = [
        ("appointmentscheduled", "Appointment Scheduled", "0.2"),
        ("qualifiedtobuy", "Qualified To Buy", "0.4"),
        ("presentationscheduled", "Presentation Scheduled", "0.6"),
        ("decisionmakerboughtin", "Decision Maker Bought-In", "0.8"),
        ("contractsent", "Contract Sent", "0.9"),
        ("closedwon", "Closed Won", "1.0"),
        ("closedlost", "Closed Lost", "0.0"),
    ]
    deals = [
        _stage(s, lab, i, probability=p, **({"isClosed": "true"} if s.startswith("closed") else {}))
        for i, (s, lab, p) in enumerate(deal_stages)
    ]
    tickets = [
        _stage(s, lab, i, ticketState=st)
        for i, (s, lab, st) in enumerate(
            [
                ("1", "New", "OPEN"),
                ("2", "Waiting on contact", "OPEN"),
                ("3", "Waiting on us", "OPEN"),
                ("4", "Closed", "CLOSED"),
            ]
        )
    ]
    base = {
        "archived": False,
        "createdAt": "2019-08-06T02:41:08.029Z",
        "updatedAt": "2019-08-06T02:41:08.029Z",
    }
    return {
        "deals": {
            "default": {
                **base,
                "id": "default",
                "label": "Sales Pipeline",
                "displayOrder": 0,
                "stages": deals,
            }
        },
        "tickets": {
            "0": {**base, "id": "0", "label": "Support Pipeline", "displayOrder": 0, "stages": tickets}
        },
    }


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
            return None, problem(
                name, "INVALID_DATE", f"{text} is not a valid date or epoch millisecond value."
            )
        if ptype == "date":
            if ms % 86_400_000:
                return None, problem(
                    name, "INVALID_DATE", f"{text} is not midnight UTC, as a date property requires."
                )
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
