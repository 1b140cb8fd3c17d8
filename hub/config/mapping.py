"""The mapping file model: one canonical entity, declared once across every system.

```yaml
entity: client
identity: [email, phone]            # matched across systems in this order
owner: hubspot                      # default owner of fields (optional)
fields:
  email: {type: email, required: true}
  status: {type: enum, values: [lead, active], default: lead}
  bookings: {type: number, aggregate: {op: count, entity: booking, join: client_email}}
systems:
  airtable: {base: "${AIRTABLE_BASE_ID}", table: Clients, fields: {email: Email}}
  hubspot: {object: contacts, fields: {email: email}}
```
Every system also exposes its own record id as the implicit field ``<system>_id``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from hub.config.types import ExprField, Identifier, Strict, TemplateField, TimeZone

SYSTEMS = ("airtable", "hubspot", "firestore", "mailchimp")
FieldType = Literal[
    "string", "text", "email", "phone", "url", "number", "integer", "bool", "date", "datetime", "enum", "list", "json"
]
FIELD_TYPES: tuple[str, ...] = FieldType.__args__  # type: ignore[attr-defined]


class Aggregate(Strict):
    """A value computed over related records: a client's bookings count, revenue, last booking."""

    op: Literal["count", "sum", "min", "max", "avg", "latest"]
    entity: Identifier = Field(description="The related entity, e.g. booking")
    join: Identifier = Field(description="Field of the related entity holding this record's key")
    key: Identifier | None = Field(None, description="This record's field the join refers to (default: first identity)")
    field: Identifier | None = Field(None, description="Related field to aggregate (not for count)")
    where: ExprField | None = Field(None, description="Only related records for which this is true (as `item`)")

    @model_validator(mode="after")
    def _field_needed(self) -> Aggregate:
        if self.op != "count" and self.field is None:
            raise ValueError(f"aggregate op {self.op!r} needs 'field' (the related field to {self.op})")
        return self


class FieldDef(Strict):
    type: FieldType = "string"
    description: str = ""
    required: bool = False
    default: Any = None
    values: list[str] | None = Field(None, description="Allowed values of an enum")
    region: str | None = Field(None, description="Default region for phone numbers without a country code")
    tz: TimeZone | None = Field(None, description="Time zone for dates/times written without an offset")
    owner: str | None = Field(None, description="The system whose value wins, or 'hub' for computed fields")
    personal: bool | None = Field(None, description="Personal data (kept out of logs, erased on request)")
    compute: ExprField | None = None
    template: TemplateField | None = None
    aggregate: Aggregate | None = None

    @model_validator(mode="after")
    def _coherent(self) -> FieldDef:
        if self.type == "enum" and not self.values:
            raise ValueError("an enum field needs 'values'")
        if self.values is not None and self.type != "enum":
            raise ValueError(f"'values' only applies to enum fields, this one is {self.type!r}")
        if self.type == "enum" and self.default is not None and self.default not in (self.values or []):
            raise ValueError(f"default {self.default!r} is not one of the values {self.values}")
        sources = [n for n in ("compute", "template", "aggregate") if getattr(self, n) is not None]
        if len(sources) > 1:
            raise ValueError(f"a field is computed one way only; got {' and '.join(sources)}")
        if self.region is not None and self.type != "phone":
            raise ValueError("'region' only applies to phone fields")
        return self

    @property
    def computed(self) -> bool:
        return self.compute is not None or self.template is not None or self.aggregate is not None

    @property
    def is_personal(self) -> bool:
        if self.personal is not None:
            return self.personal
        return self.type in ("email", "phone")


class SystemField(Strict):
    field: str = Field(description="The field in the system; dotted for nested values (merge_fields.FNAME)")
    map: dict[str, Any] | None = Field(None, description="Canonical value → system value (enums)")
    readonly: bool = Field(False, description="Read from this system, never written to it")


def _fields_shorthand(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ({"field": v} if isinstance(v, str) else v) for k, v in value.items()}
    return value


class _Target(Strict):
    fields: dict[str, SystemField] = Field(default_factory=dict)

    _shorthand = field_validator("fields", mode="before")(_fields_shorthand)


class AirtableTarget(_Target):
    base: str = Field(description="Base id (app...), usually ${AIRTABLE_BASE_ID}")
    table: str
    modified_field: str | None = Field(None, description="A 'Last modified time' field, for change tracking")


class HubSpotTarget(_Target):
    object: str = Field(description="contacts, companies, deals, tickets, tasks, notes or a custom object type")
    unique: str | None = Field(None, description="Unique property used to upsert (default: email for contacts)")
    pipeline: str | None = Field(None, description="Pipeline id for deals/tickets")


class FirestoreTarget(_Target):
    collection: str
    updated_field: str = Field("updated_at", description="Timestamp field used for changed-since reads")


class MailchimpTarget(_Target):
    list: str = Field(description="Audience id, usually ${MAILCHIMP_LIST_ID}")
    status_if_new: Literal["subscribed", "pending", "transactional"] = "subscribed"


class Systems(Strict):
    airtable: AirtableTarget | None = None
    hubspot: HubSpotTarget | None = None
    firestore: FirestoreTarget | None = None
    mailchimp: MailchimpTarget | None = None

    def items(self) -> tuple[tuple[str, _Target], ...]:
        """The configured systems, in a fixed order (built once: sync reads it for every record)."""
        return self.memo(
            "_memo_items", lambda: tuple((name, t) for name in SYSTEMS if (t := getattr(self, name)) is not None)
        )


def _field_shorthand(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ({"type": v} if isinstance(v, str) else ({} if v is None else v)) for k, v in value.items()}
    return value


class Mapping(Strict):
    entity: Identifier
    description: str = ""
    identity: list[Identifier] = Field(min_length=1, description="Canonical fields that identify a record")
    owner: str | None = Field(None, description="Default owner of every field")
    consent: Identifier | None = Field(None, description="A bool field: marketing consent")
    journey: Identifier | None = Field(None, description="A field holding the record's timeline of events")
    fields: dict[Identifier, FieldDef]
    systems: Systems

    _shorthand = field_validator("fields", mode="before")(_field_shorthand)

    def all_fields(self) -> dict[str, FieldDef]:
        """Declared fields plus the implicit ``<system>_id`` of each system."""

        def build() -> dict[str, FieldDef]:
            out = dict(self.fields)
            for name, _ in self.systems.items():
                out.setdefault(f"{name}_id", FieldDef(type="string", owner=name))
            return out

        return self.memo("_memo_all_fields", build)

    def owner_of(self, field: str) -> str | None:
        fd = self.all_fields().get(field)
        if fd is None:
            return None
        if fd.computed:
            return "hub"
        return fd.owner or self.owner
