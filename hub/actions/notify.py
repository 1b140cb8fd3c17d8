"""Internal alerts to a Slack-compatible incoming webhook (T6, T10, A2's manager notice)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from hub.actions import checks
from hub.actions.registry import action
from hub.config.types import Identifier, Strict
from hub.engine.context import ActionContext


class NotifyArgs(Strict):
    text: str = Field(min_length=1, description="The message (templates allowed); no personal data please")
    channel: Identifier = Field("ops", description="A channel declared under `channels:` in rules.yaml")


@action(
    "notify",
    NotifyArgs,
    check=lambda raw, cfg, entity: checks.declared(raw.get("channel", "ops"), cfg, "channels", "channel"),
)
def notify(ctx: ActionContext, args: NotifyArgs) -> dict[str, Any]:
    """Post a message to an operator channel (Slack/Teams/Mattermost incoming webhook)."""
    return ctx.notify(args.channel, args.text)
