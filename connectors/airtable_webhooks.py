"""Airtable webhooks for the connector: create, list, refresh, delete and read payloads, and
verify the signed pings Airtable sends to the hub.

Airtable pings carry no data; the hub verifies the MAC, then reads payloads from its stored
cursor. Every call goes through the connector's ``_call`` (quota slot, classification, retry).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from typing import Any

from pyairtable import Api

from connectors.base import Collection


def verify_ping(body: bytes, header: str, secret_b64: str) -> dict[str, Any]:
    """Check an Airtable ping's ``X-Airtable-Content-MAC``; returns the parsed ping.

    Raises ValueError when the MAC does not match (the ping did not come from Airtable)."""
    digest = hmac.new(base64.b64decode(secret_b64), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(f"hmac-sha256={digest}", header or ""):
        raise ValueError("X-Airtable-Content-MAC does not match the webhook's secret")
    ping = json.loads(body)
    if not isinstance(ping, dict) or "webhook" not in ping or "base" not in ping:
        raise ValueError(f"not an Airtable ping: {body[:200]!r}")
    return ping


class AirtableWebhooks:
    """Webhook management, mixed into :class:`connectors.airtable.AirtableConnector`."""

    api: Api
    _call: Callable[..., Any]

    def create_webhook(
        self, base: str, notification_url: str, *, table: str | None = None, include_previous: bool = True,
        data_types: Sequence[str] = ("tableData",),
    ) -> dict[str, Any]:
        """A webhook on ``base`` (optionally one table): ``{id, macSecretBase64, expirationTime}``.
        Keep the secret: Airtable shows it only once."""
        filters: dict[str, Any] = {"dataTypes": list(data_types)}
        if table:
            filters["recordChangeScope"] = table
        spec = {"options": {"filters": filters, "includes": {"includePreviousCellValues": include_previous}}}
        coll = Collection("webhooks", base)
        at = self.api.base(base)
        made = self._call(coll, "create webhook", lambda: at.add_webhook(notification_url, spec))
        return made.model_dump(by_alias=True, mode="json")

    def list_webhooks(self, base: str) -> list[dict[str, Any]]:
        at = self.api.base(base)
        hooks = self._call(Collection("webhooks", base), "list webhooks", lambda: at.webhooks())
        return [h.model_dump(by_alias=True, mode="json") for h in hooks]

    def refresh_webhook(self, base: str, webhook_id: str) -> str | None:
        """Extend the webhook's life by 7 days; returns the new expiration time."""
        url = f"{self.api.base(base).urls.webhooks}/{webhook_id}/refresh"
        out = self._call(Collection("webhooks", base), "refresh webhook", lambda: self.api.post(url))
        return (out or {}).get("expirationTime")

    def delete_webhook(self, base: str, webhook_id: str) -> None:
        url = f"{self.api.base(base).urls.webhooks}/{webhook_id}"
        self._call(Collection("webhooks", base), "delete webhook", lambda: self.api.delete(url))

    def list_payloads(
        self, base: str, webhook_id: str, cursor: int = 1, limit: int = 50
    ) -> tuple[list[dict[str, Any]], int, bool]:
        """One page of payloads from ``cursor``: (payloads, next cursor, might have more)."""
        url = f"{self.api.base(base).urls.webhooks}/{webhook_id}/payloads"
        page = self._call(Collection("webhooks", base), "list payloads",
                          lambda: self.api.get(url, options={"cursor": cursor, "limit": limit}))
        return list(page["payloads"]), int(page["cursor"]), bool(page["mightHaveMore"])
