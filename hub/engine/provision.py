"""Schema provisioning (``hub provision``): the tables, fields, properties and merge fields the
mappings use, created where missing, so Airtable's and HubSpot's own views show the hub's data.
"""

from __future__ import annotations

from typing import Any

from connectors.base import FieldSpec
from hub.config.mapping import Mapping
from hub.engine.entities import collection
from hub.runtime import Runtime

_TYPES = {
    "string": "string",
    "text": "text",
    "email": "email",
    "phone": "phone",
    "url": "string",
    "number": "number",
    "integer": "number",
    "bool": "bool",
    "date": "date",
    "datetime": "datetime",
    "enum": "enum",
    "list": "text",
    "json": "text",
}
# Fields the vendors define themselves: never created by the hub.
_BUILTIN = {
    "hubspot": {
        "email",
        "firstname",
        "lastname",
        "phone",
        "createdate",
        "lastmodifieddate",
        "hs_lead_status",
        "lifecyclestage",
        "dealname",
        "amount",
        "dealstage",
        "pipeline",
        "closedate",
        "subject",
        "content",
        "hs_pipeline",
        "hs_pipeline_stage",
        "hs_ticket_priority",
        "name",
        "domain",
        "hs_object_id",
        "hs_analytics_source",
        "hs_task_subject",
        "hs_task_body",
        "hs_timestamp",
        "hs_task_status",
        "hs_task_priority",
        "hs_note_body",
        "hubspot_owner_id",
        "company",
        "website",
        "city",
        "country",
    },
    "mailchimp": {"email_address", "status", "email_type", "language", "vip", "tags"},
}


def specs(mapping: Mapping, system: str) -> list[FieldSpec]:
    """FieldSpecs for what ``system`` maps, identity field first (Airtable's primary field)."""
    target = getattr(mapping.systems, system)
    fields = mapping.all_fields()
    out = []
    for cname, sf in target.fields.items():
        name = sf.field
        if name in _BUILTIN.get(system, ()) or name.split(".")[0] in _BUILTIN.get(system, ()):
            continue
        fd = fields[cname]
        options: list[str] = []
        if fd.type == "enum":
            options = [str((sf.map or {}).get(v, v)) for v in fd.values or []]
        label = cname.replace("_", " ").capitalize() if system != "airtable" else name
        out.append(FieldSpec(name=name, type=_TYPES[fd.type], label=label, options=options))
    ident = next((target.fields[i].field for i in mapping.identity if i in target.fields), None)
    out.sort(key=lambda s: s.name != ident)
    return out


def provision(rt: Runtime, *, only: set[str] | None = None) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for entity, mapping in rt.config.mappings.items():
        for system, _ in mapping.systems.items():
            if only is not None and system not in only:
                continue
            wanted = specs(mapping, system)
            created = rt.connector(system).ensure_schema(collection(mapping, system), wanted) if wanted else []
            report.setdefault(entity, {})[system] = {"created": created, "checked": len(wanted)}
    return report
