"""What an action may do, as a Protocol: the engine provides it, dry runs record instead of acting.

Every method that touches the outside world is given the action's idempotency key by the
implementation, so actions themselves stay small and cannot forget it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol


class ActionContext(Protocol):
    rule_id: str
    entity: str | None
    record: dict[str, Any] | None
    event: dict[str, Any]
    key: str  # idempotency key: rule, record, trigger occurrence, step path

    def now(self) -> datetime: ...

    def update_record(self, fields: dict[str, Any]) -> dict[str, Any]: ...

    def upsert_entity(self, entity: str, fields: dict[str, Any]) -> dict[str, Any]: ...

    def append_journey(self, event: str, details: dict[str, Any]) -> dict[str, Any]: ...

    def notify(self, channel: str, text: str) -> dict[str, Any]: ...

    def send_webhook(self, target: str, type_: str, data: dict[str, Any]) -> dict[str, Any]: ...

    def hubspot_create(self, object_type: str, properties: dict[str, Any]) -> dict[str, Any]: ...

    def hubspot_associate(self, entity: str, other_id: str) -> dict[str, Any]: ...

    def mailchimp_upsert(self, status_if_new: str, merge_fields: dict[str, Any]) -> dict[str, Any]: ...

    def mailchimp_tags(self, add: list[str], remove: list[str]) -> dict[str, Any]: ...

    def mailchimp_event(self, name: str, properties: dict[str, str]) -> dict[str, Any]: ...
