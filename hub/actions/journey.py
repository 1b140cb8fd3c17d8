"""The client's timeline: timestamped events kept in its system of record (T1's journey)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from hub.actions.registry import action
from hub.config.types import Strict
from hub.engine.context import ActionContext


def _journey(cfg: Any, entity: str | None) -> list[tuple[str, str]]:
    mapping = cfg.mappings.get(entity) if entity else None
    if mapping is None:
        return [("", "journey.append needs a record, and the rule's trigger has none")] if entity is None else []
    if mapping.journey is None:
        return [("", f"entity {entity!r} declares no 'journey:' field")]
    return []


class AppendArgs(Strict):
    event: str = Field(min_length=1, description="Event name, e.g. email_sent_welcome")
    details: dict[str, Any] = Field(default_factory=dict)


@action("journey.append", AppendArgs, check=lambda raw, cfg, entity: _journey(cfg, entity))
def append(ctx: ActionContext, args: AppendArgs) -> dict[str, Any]:
    """Append {event, at, details} to the record's journey field (declared by the mapping)."""
    return ctx.append_journey(args.event, args.details)
