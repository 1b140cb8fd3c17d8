"""The job every webhook request becomes: a batch of normalised events from one provider."""

from __future__ import annotations

from typing import Any

from hub.engine import sync
from hub.jobs import hub_job
from hub.runtime import Runtime


@hub_job
def handle_events(provider: str, events: list[dict[str, Any]]) -> dict[str, int]:
    """Source events (record X changed in system S) go through sync; inbound webhooks go to rules."""
    rt = Runtime.current()
    if provider == "inbound":
        from hub.engine.rules import handle_webhook

        counts: dict[str, int] = {}
        for ev in events:
            for outcome in handle_webhook(rt, ev["name"], ev.get("payload") or {}, ev["id"]):
                counts[outcome] = counts.get(outcome, 0) + 1
        return counts
    return sync.ingest(rt, events)
