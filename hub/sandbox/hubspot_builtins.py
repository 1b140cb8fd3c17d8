"""What a fresh HubSpot portal already has: built-in properties of each object type, the
HubSpot-defined association types (ids from HubSpot's v4 "association type id values" tables) and
the default sales and support pipelines.
"""

from __future__ import annotations

from typing import Any

from hub.sandbox.hubspot_schema import TYPES, ApiError

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


def _p(name: str, ptype: str = "string", options: tuple[str, ...] = (), field_type: str = "") -> dict[str, Any]:
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
        "tickets": {"0": {**base, "id": "0", "label": "Support Pipeline", "displayOrder": 0, "stages": tickets}},
    }
