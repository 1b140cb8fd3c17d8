"""Actions on hub records: set fields on the rule's record, upsert a related entity."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from hub.actions import checks
from hub.actions.registry import action
from hub.config.types import Identifier, Strict
from hub.engine.context import ActionContext


class SetArgs(Strict):
    fields: dict[Identifier, Any] = Field(min_length=1, description="Canonical field → value (templates allowed)")


@action("record.set", SetArgs, external=False, check=lambda raw, cfg, entity: checks.known_fields(raw, cfg, entity))
def set_fields(ctx: ActionContext, args: SetArgs) -> dict[str, Any]:
    """Set fields on the rule's record; written to every system that maps them."""
    return ctx.update_record(args.fields)


class UpsertArgs(Strict):
    entity: Identifier = Field(description="The entity to create or update")
    fields: dict[Identifier, Any] = Field(min_length=1, description="Its canonical fields, identity included")


@action(
    "record.upsert",
    UpsertArgs,
    external=False,
    check=lambda raw, cfg, entity: (
        checks.known_entity(raw.get("entity"), cfg, "entity") or checks.known_fields(raw, cfg, raw.get("entity"))
    ),
)
def upsert(ctx: ActionContext, args: UpsertArgs) -> dict[str, Any]:
    """Create or update a record of another entity, matched by its identity fields."""
    return ctx.upsert_entity(args.entity, args.fields)
