"""Mailchimp actions on the rule's contact. Tags and events drive Mailchimp's own emails and
customer journeys; the hub never sends email itself. All are marketing: consent applies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from hub.actions import checks
from hub.actions.registry import action
from hub.config.types import Strict
from hub.engine.context import ActionContext


def _audience(raw: dict[str, Any], cfg: Any, entity: str | None) -> list[tuple[str, str]]:
    return checks.mailchimp_audience(cfg, entity)


class UpsertArgs(Strict):
    status_if_new: Literal["subscribed", "pending", "transactional"] = "subscribed"
    merge_fields: dict[str, Any] = Field(default_factory=dict, description="Extra merge fields (MERGE TAG → value)")


@action("mailchimp.upsert_member", UpsertArgs, marketing=True, check=_audience)
def upsert_member(ctx: ActionContext, args: UpsertArgs) -> dict[str, Any]:
    """Add or update the contact in the audience, with the mapped merge fields."""
    return ctx.mailchimp_upsert(args.status_if_new, args.merge_fields)


class TagArgs(Strict):
    tags: list[str] = Field(min_length=1)


@action("mailchimp.tag", TagArgs, marketing=True, check=_audience)
def tag(ctx: ActionContext, args: TagArgs) -> dict[str, Any]:
    """Add tags to the contact (a Mailchimp automation can start on a tag)."""
    return ctx.mailchimp_tags(add=args.tags, remove=[])


@action("mailchimp.untag", TagArgs, marketing=True, check=_audience)
def untag(ctx: ActionContext, args: TagArgs) -> dict[str, Any]:
    """Remove tags from the contact."""
    return ctx.mailchimp_tags(add=[], remove=args.tags)


class EventArgs(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{2,30}$", description="Event name (letters, digits, _ and -)")
    properties: dict[str, str] = Field(default_factory=dict)


@action("mailchimp.event", EventArgs, marketing=True, check=_audience)
def event(ctx: ActionContext, args: EventArgs) -> dict[str, Any]:
    """Record a custom event on the contact (starts Mailchimp customer journeys)."""
    return ctx.mailchimp_event(args.name, args.properties)
