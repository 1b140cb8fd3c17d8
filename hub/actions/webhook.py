"""Outbound webhooks (A6): one JSON envelope, signed per Standard Webhooks, retried, logged."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from hub.actions import checks
from hub.actions.registry import action
from hub.config.types import Identifier, Strict
from hub.engine.context import ActionContext


class SendArgs(Strict):
    to: Identifier = Field(description="A target declared under `outbound:` in rules.yaml")
    type: str = Field(min_length=1, description="Event type, e.g. deal.won")
    data: dict[str, Any] = Field(default_factory=dict, description="Payload (templates allowed)")


@action(
    "webhook.send",
    SendArgs,
    check=lambda raw, cfg, entity: checks.declared(raw.get("to"), cfg, "outbound", "to"),
)
def send(ctx: ActionContext, args: SendArgs) -> dict[str, Any]:
    """POST {type, timestamp, data} signed with the target's secret; the idempotency key is the webhook-id."""
    return ctx.send_webhook(args.to, args.type, args.data)
