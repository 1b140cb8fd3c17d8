"""HubSpot actions: tasks, notes and tickets tied to the rule's record, and associations.

Objects are created by upserting on the ``hub_action_key`` property, so a retried or duplicated
action finds the object it already created instead of making a second one.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from hub.actions import checks
from hub.actions.registry import action
from hub.config.types import Duration, Identifier, Strict
from hub.engine.context import ActionContext


class TaskArgs(Strict):
    subject: str = Field(min_length=1)
    body: str = ""
    due: Duration | None = Field(None, description="Due this long after now (default: now)")
    priority: Literal["LOW", "MEDIUM", "HIGH"] = "MEDIUM"
    owner: str | None = Field(None, description="HubSpot owner id")


@action("hubspot.create_task", TaskArgs)
def create_task(ctx: ActionContext, args: TaskArgs) -> dict[str, Any]:
    """Create a HubSpot task associated with the record."""
    due = ctx.now() + args.due if args.due else ctx.now()
    props = {
        "hs_task_subject": args.subject,
        "hs_task_body": args.body,
        "hs_timestamp": due.isoformat().replace("+00:00", "Z"),
        "hs_task_priority": args.priority,
        "hs_task_status": "NOT_STARTED",
    }
    if args.owner:
        props["hubspot_owner_id"] = args.owner
    return ctx.hubspot_create("tasks", props)


class NoteArgs(Strict):
    body: str = Field(min_length=1)


@action("hubspot.create_note", NoteArgs)
def create_note(ctx: ActionContext, args: NoteArgs) -> dict[str, Any]:
    """Add a note to the record's HubSpot timeline."""
    props = {"hs_note_body": args.body, "hs_timestamp": ctx.now().isoformat().replace("+00:00", "Z")}
    return ctx.hubspot_create("notes", props)


class TicketArgs(Strict):
    subject: str = Field(min_length=1)
    content: str = ""
    pipeline: str = "0"
    stage: str = Field("1", description="Pipeline stage id")
    priority: Literal["LOW", "MEDIUM", "HIGH", "URGENT"] | None = None


@action("hubspot.create_ticket", TicketArgs)
def create_ticket(ctx: ActionContext, args: TicketArgs) -> dict[str, Any]:
    """Open a HubSpot ticket associated with the record (E1: every call becomes a ticket)."""
    props: dict[str, Any] = {
        "subject": args.subject,
        "content": args.content,
        "hs_pipeline": args.pipeline,
        "hs_pipeline_stage": args.stage,
    }
    if args.priority:
        props["hs_ticket_priority"] = args.priority
    return ctx.hubspot_create("tickets", props)


class AssociateArgs(Strict):
    entity: Identifier = Field(description="Entity of the other record")
    id: str = Field(description="Its HubSpot id (template), e.g. {{ record.company_hubspot_id }}")


@action(
    "hubspot.associate",
    AssociateArgs,
    check=lambda raw, cfg, entity: checks.known_entity(raw.get("entity"), cfg, "entity"),
)
def associate(ctx: ActionContext, args: AssociateArgs) -> dict[str, Any]:
    """Associate the record with another HubSpot record (default association type)."""
    return ctx.hubspot_associate(args.entity, args.id)
