"""HubSpot set-up through the SDK: custom properties (schema provisioning), pipelines and their
stages, associations, and webhook subscriptions of the app.

Webhook settings and subscriptions are authenticated with the developer account's API key, sent
as ``hapikey`` the way hubspot-api-client does it (``Client.create(api_key=...)``); every other
call uses the private-app token. Everything is checked before the first request.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import hubspot
from hubspot.crm.pipelines import PipelineInput, PipelineStageInput
from hubspot.crm.properties import OptionInput, PropertyCreate, PropertyGroupCreate
from hubspot.webhooks import (
    SettingsChangeRequest,
    SubscriptionCreateRequest,
    SubscriptionPatchRequest,
    ThrottlingSettings,
)
from urllib3.util.retry import Retry

from connectors.base import FieldSpec
from hub.errors import ConfigError, MissingSetting

if TYPE_CHECKING:
    from connectors.hubspot import HubSpotConnector

# FieldSpec.type -> (HubSpot type, fieldType)
TYPE_MAP = {
    "string": ("string", "text"),
    "text": ("string", "textarea"),
    "email": ("string", "text"),
    "phone": ("string", "text"),
    "number": ("number", "number"),
    "bool": ("bool", "booleancheckbox"),
    "date": ("date", "date"),
    "datetime": ("datetime", "date"),
    "enum": ("enumeration", "select"),
}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_EVENT = re.compile(r"^(contact|company|deal|ticket)\.(creation|deletion|propertyChange)(?::([a-z0-9_]+))?$")


@dataclass(frozen=True)
class Stage:
    """A pipeline stage to have: tickets need open/closed, deals a win probability (0–1)."""

    label: str
    closed: bool = False
    probability: float | None = None


@dataclass
class Pipeline:
    id: str
    label: str
    stages: dict[str, str] = field(default_factory=dict)  # stage label -> stage id


def _property(spec: FieldSpec, group: str) -> PropertyCreate:
    if not _NAME.match(spec.name):
        raise ConfigError(
            f"HubSpot property name {spec.name!r} is invalid: use lowercase letters, digits and "
            "underscores, starting with a letter"
        )
    if spec.type not in TYPE_MAP:
        raise ConfigError(f"field {spec.name!r} has type {spec.type!r}; HubSpot properties know {sorted(TYPE_MAP)}")
    ptype, field_type = TYPE_MAP[spec.type]
    options = None
    if spec.type == "enum":
        if not spec.options:
            raise ConfigError(f"enum field {spec.name!r} needs options")
        options = [
            OptionInput(label=str(o), value=str(o), hidden=False, display_order=i) for i, o in enumerate(spec.options)
        ]
    elif spec.type == "bool":
        options = [
            OptionInput(label="Yes", value="true", hidden=False, display_order=0),
            OptionInput(label="No", value="false", hidden=False, display_order=1),
        ]
    label = spec.label or spec.name.replace("_", " ").capitalize()
    return PropertyCreate(
        name=spec.name,
        label=label,
        type=ptype,
        field_type=field_type,
        group_name=group,
        options=options,
        form_field=True,
        has_unique_value=True if spec.unique else None,
    )


def ensure_group(hs: HubSpotConnector, object_type: str) -> None:
    api = hs.client.crm.properties.groups_api
    groups = hs._call(
        "list property groups", lambda: api.get_all(object_type, _request_timeout=hs.timeout), object_type
    )
    if any(g.name == hs.property_group for g in groups.results):
        return
    body = PropertyGroupCreate(name=hs.property_group, label="Integration hub", display_order=-1)
    hs._call(
        "create property group",
        lambda: api.create(object_type, body, _request_timeout=hs.timeout),
        object_type,
    )


def create_properties(hs: HubSpotConnector, object_type: str, fields: Sequence[FieldSpec]) -> list[str]:
    """Create these properties in the hub's group; returns the names created."""
    bodies = [_property(f, hs.property_group) for f in fields]  # validate all before any request
    if not bodies:
        return []
    ensure_group(hs, object_type)
    api = hs.client.crm.properties.core_api
    created = []
    for body in bodies:
        hs._call(
            "create property",
            partial(api.create, object_type, body, _request_timeout=hs.timeout),
            object_type,
        )
        created.append(body.name)
    hs.forget_properties(object_type)
    return created


def ensure_schema(hs: HubSpotConnector, object_type: str, fields: Sequence[FieldSpec]) -> list[str]:
    """Create the properties ``fields`` names that the object type lacks."""
    for spec in fields:
        _property(spec, hs.property_group)
    api = hs.client.crm.properties.core_api
    have = hs._call("list properties", lambda: api.get_all(object_type, _request_timeout=hs.timeout), object_type)
    names = {p.name for p in have.results}
    return create_properties(hs, object_type, [f for f in fields if f.name not in names])


def _stage_input(object_type: str, stage: Stage, order: int) -> PipelineStageInput:
    if object_type == "tickets":
        meta = {"ticketState": "CLOSED" if stage.closed else "OPEN"}
    else:
        prob = stage.probability if stage.probability is not None else (1.0 if stage.closed else 0.5)
        if not 0.0 <= prob <= 1.0:
            raise ConfigError(f"stage {stage.label!r}: probability must be between 0 and 1, got {prob!r}")
        meta = {"probability": str(prob), **({"isClosed": "true"} if stage.closed else {})}
    return PipelineStageInput(label=stage.label, display_order=order, metadata=meta)


def ensure_pipeline(hs: HubSpotConnector, object_type: str, label: str, stages: Sequence[str | Stage]) -> Pipeline:
    """The pipeline labelled ``label`` with at least these stages (created or completed as needed)."""
    if object_type not in ("tickets", "deals"):
        raise ConfigError(f"pipelines exist for tickets and deals, not {object_type!r}")
    wanted = [s if isinstance(s, Stage) else Stage(str(s)) for s in stages]
    if not label or not wanted:
        raise ConfigError(f"pipeline {label!r} of {object_type} needs a label and at least one stage")
    inputs = [_stage_input(object_type, s, i) for i, s in enumerate(wanted)]
    pipes = hs.client.crm.pipelines.pipelines_api
    found = hs._call("list pipelines", lambda: pipes.get_all(object_type, _request_timeout=hs.timeout), object_type)
    current = next((p for p in found.results if p.label == label), None)
    if current is None:
        body = PipelineInput(label=label, display_order=len(found.results), stages=inputs)
        current = hs._call(
            "create pipeline",
            lambda: pipes.create(object_type, body, _request_timeout=hs.timeout),
            object_type,
        )
    have = {s.label: s.id for s in current.stages}
    stage_api = hs.client.crm.pipelines.pipeline_stages_api
    for spec, body in zip(wanted, inputs, strict=True):
        if spec.label not in have:
            body.display_order = len(have)
            made = hs._call(
                "create pipeline stage",
                partial(stage_api.create, object_type, current.id, body, _request_timeout=hs.timeout),
                object_type,
            )
            have[made.label] = made.id
    return Pipeline(id=current.id, label=current.label, stages=have)


def associate(hs: HubSpotConnector, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
    """Link two records with HubSpot's default (unlabeled) association type."""
    api = hs.client.crm.associations.v4.basic_api
    hs._call(
        "associate",
        lambda: api.create_default(from_type, str(from_id), to_type, str(to_id), _request_timeout=hs.timeout),
        from_type,
    )


def subscribe(hs: HubSpotConnector, app_id: int | str, target_url: str, event_types: Sequence[str]) -> list[str]:
    """Point the app's webhooks at ``target_url`` and make these subscriptions exist and be active.

    Event types are ``contact.creation``, ``deal.deletion``, ``ticket.propertyChange:hs_pipeline_stage``
    (a property change names its property after a colon). Returns the subscription ids, in order.
    """
    parsed = []
    for raw in event_types:
        m = _EVENT.match(raw)
        if m is None or (m.group(2) == "propertyChange") != bool(m.group(3)):
            raise ConfigError(
                f"webhook event {raw!r} is not of the form object.creation, object.deletion or "
                "object.propertyChange:property (object: contact, company, deal, ticket)"
            )
        parsed.append((f"{m.group(1)}.{m.group(2)}", m.group(3)))
    if not parsed:
        raise ConfigError("subscribe needs at least one webhook event type")
    if not hs.developer_api_key:
        raise MissingSetting("HUBSPOT_DEVELOPER_API_KEY", "webhook subscriptions (connectors.hubspot.subscribe)")
    client = hubspot.Client.create(api_key=hs.developer_api_key, host=hs.host, retry=Retry(0, read=False))
    gov = hs.developer_governor
    settings_api, subs_api, app = client.webhooks.settings_api, client.webhooks.subscriptions_api, int(app_id)
    body = SettingsChangeRequest(target_url=target_url, throttling=ThrottlingSettings(max_concurrent_requests=10))
    hs._call(
        "webhook settings",
        lambda: settings_api.configure(app, body, _request_timeout=hs.timeout),
        governor=gov,
    )
    existing = hs._call("list subscriptions", lambda: subs_api.get_all(app, _request_timeout=hs.timeout), governor=gov)
    ids = []
    for event_type, prop in parsed:
        sub = next(
            (s for s in existing.results if s.event_type == event_type and (s.property_name or None) == prop),
            None,
        )
        if sub is None:
            req = SubscriptionCreateRequest(event_type=event_type, property_name=prop, active=True)
            sub = hs._call(
                "create subscription",
                partial(subs_api.create, app, req, _request_timeout=hs.timeout),
                governor=gov,
            )
        elif not sub.active:
            patch = SubscriptionPatchRequest(active=True)
            sub = hs._call(
                "activate subscription",
                partial(subs_api.update, sub.id, app, patch, _request_timeout=hs.timeout),
                governor=gov,
            )
        ids.append(str(sub.id))
    return ids
