"""Webhooks of the Airtable stand-in: create/list/refresh/delete, payloads kept by cursor, and a
signed ping to the notification URL whenever a matching change happens.

As on Airtable, the ping carries no data — only ``{"base", "webhook", "timestamp"}`` signed with
``X-Airtable-Content-MAC: hmac-sha256=<hex>`` keyed by the base64-decoded ``macSecretBase64`` —
and the receiver then lists payloads from its cursor. Payloads are v0: cell values keyed by
field id, ``previous`` values when ``includePreviousCellValues`` is set.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from hub.sandbox.airtable_fields import AirtableError, iso_datetime, parse_when
from hub.sandbox.common import Delivery, WebhookSender, iso_now, new_id

LIFETIME = timedelta(days=7)
MAX_PAGE = 50
DATA_TYPES = frozenset({"tableData", "tableFields", "tableMetadata"})
CHANGE_TYPES = frozenset({"add", "remove", "update"})


def sign(secret_b64: str, body: bytes) -> str:
    """The ``X-Airtable-Content-MAC`` value for ``body``."""
    digest = hmac.new(base64.b64decode(secret_b64), body, hashlib.sha256).hexdigest()
    return f"hmac-sha256={digest}"


def _bad_spec(detail: str) -> AirtableError:
    return AirtableError(422, "INVALID_FILTERS", f"Invalid webhook specification: {detail}")


class HookOps:
    """Webhook endpoints over ``self.state["webhooks"]`` (webhook id → webhook)."""

    state: dict[str, Any]
    lock: threading.RLock
    sender: WebhookSender
    max_payloads: int
    user: dict[str, Any]

    base: Callable[[str], dict[str, Any]]  # from RecordOps

    def _hooks(self, base_id: str) -> dict[str, dict[str, Any]]:
        self.base(base_id)
        return {k: h for k, h in self.state["webhooks"].items() if h["base"] == base_id}

    def _hook(self, base_id: str, hook_id: str) -> dict[str, Any]:
        hook = self._hooks(base_id).get(hook_id)
        if hook is None:
            raise AirtableError(404, "NOT_FOUND", f"Could not find webhook {hook_id}")
        return hook

    def create_hook(self, base_id: str, body: Any) -> dict[str, Any]:
        base = self.base(base_id)
        if not isinstance(body, dict):
            raise _bad_spec("the body must be an object")
        url = body.get("notificationUrl")
        if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
            raise _bad_spec(f"notificationUrl must be an http(s) URL, got {url!r}")
        spec = body.get("specification")
        filters = (((spec or {}).get("options") or {}).get("filters")) if isinstance(spec, dict) else None
        if not isinstance(filters, dict):
            raise _bad_spec("specification.options.filters is required")
        kinds = filters.get("dataTypes")
        if not isinstance(kinds, list) or not kinds or not set(kinds) <= DATA_TYPES:
            raise _bad_spec(f"filters.dataTypes must be a non-empty subset of {sorted(DATA_TYPES)}")
        scope = filters.get("recordChangeScope")
        if scope is not None and scope not in base["tables"]:
            raise _bad_spec(f"recordChangeScope {scope!r} is not a table of base {base_id}")
        if not set(filters.get("changeTypes") or []) <= CHANGE_TYPES:
            raise _bad_spec(f"filters.changeTypes must be a subset of {sorted(CHANGE_TYPES)}")
        hook = {
            "id": new_id("ach"),
            "base": base_id,
            "notificationUrl": url,
            "specification": spec,
            "secret": base64.b64encode(secrets.token_bytes(32)).decode("ascii"),
            "expirationTime": iso_datetime(datetime.now(UTC) + LIFETIME),
            "areNotificationsEnabled": True,
            "payloads": [],
            "firstCursor": 1,
        }
        self.state["webhooks"][hook["id"]] = hook
        return {"id": hook["id"], "macSecretBase64": hook["secret"], "expirationTime": hook["expirationTime"]}

    @staticmethod
    def _enabled(hook: dict[str, Any]) -> bool:
        expires = parse_when(hook["expirationTime"])
        return expires is None or expires > datetime.now(UTC)

    def list_hooks(self, base_id: str) -> dict[str, Any]:
        return {
            "webhooks": [
                {
                    "id": h["id"],
                    "specification": h["specification"],
                    "notificationUrl": h["notificationUrl"],
                    "cursorForNextPayload": h["firstCursor"] + len(h["payloads"]),
                    "isHookEnabled": self._enabled(h),
                    "areNotificationsEnabled": h["areNotificationsEnabled"],
                    "expirationTime": h["expirationTime"],
                    "lastSuccessfulNotificationTime": None,
                    "lastNotificationResult": None,
                }
                for h in self._hooks(base_id).values()
            ]
        }

    def delete_hook(self, base_id: str, hook_id: str) -> dict[str, Any]:
        self._hook(base_id, hook_id)
        del self.state["webhooks"][hook_id]
        return {}

    def refresh_hook(self, base_id: str, hook_id: str) -> dict[str, Any]:
        hook = self._hook(base_id, hook_id)
        hook["expirationTime"] = iso_datetime(datetime.now(UTC) + LIFETIME)
        return {"expirationTime": hook["expirationTime"]}

    def enable_hook(self, base_id: str, hook_id: str, body: Any) -> dict[str, Any]:
        hook = self._hook(base_id, hook_id)
        if not isinstance(body, dict) or not isinstance(body.get("enable"), bool):
            raise AirtableError(422, "INVALID_REQUEST_UNKNOWN", 'Invalid request: "enable" must be a boolean')
        hook["areNotificationsEnabled"] = body["enable"]
        return {}

    def list_payloads(self, base_id: str, hook_id: str, cursor: Any, limit: Any) -> dict[str, Any]:
        hook = self._hook(base_id, hook_id)
        try:
            start = int(cursor) if cursor not in (None, "") else 1
            size = int(limit) if limit not in (None, "") else MAX_PAGE
        except ValueError:
            start = size = 0
        if start < 1 or not 1 <= size <= MAX_PAGE:
            raise AirtableError(
                422,
                "INVALID_REQUEST_UNKNOWN",
                f"Invalid request: cursor must be an integer ≥ 1 and limit 1..{MAX_PAGE}",
            )
        first, payloads = hook["firstCursor"], hook["payloads"]
        start = max(start, first)
        page = payloads[start - first : start - first + size]
        end = start + len(page)
        hook["expirationTime"] = iso_datetime(datetime.now(UTC) + LIFETIME)  # reading extends the life
        return {"payloads": page, "cursor": end, "mightHaveMore": end < first + len(payloads)}

    # -- change feed -----------------------------------------------------------------------------
    def emit_changes(self, base_id: str, table: dict[str, Any], changes: dict[str, Any]) -> None:
        """Record one base transaction for every webhook it matches, and queue their pings."""
        if not (changes["created"] or changes["changed"] or changes["destroyed"]):
            return
        base = self.state["bases"][base_id]
        base["transactions"] = base.get("transactions", 0) + 1
        now = iso_now()
        for hook in self._hooks(base_id).values():
            delta = self._filtered(hook, table, changes)
            if delta is None or not self._enabled(hook):
                continue
            hook["payloads"].append(
                {
                    "timestamp": now,
                    "baseTransactionNumber": base["transactions"],
                    "payloadFormat": "v0",
                    "actionMetadata": {"source": "publicApi", "sourceMetadata": {"user": self.user}},
                    "changedTablesById": {table["id"]: delta},
                }
            )
            excess = len(hook["payloads"]) - self.max_payloads
            if excess > 0:
                del hook["payloads"][:excess]
                hook["firstCursor"] += excess
            if hook["notificationUrl"] and hook["areNotificationsEnabled"]:
                self._ping(hook, now)

    @staticmethod
    def _filtered(hook: dict[str, Any], table: dict[str, Any], changes: dict[str, Any]) -> Any:
        options = hook["specification"].get("options") or {}
        filters, includes = options.get("filters") or {}, options.get("includes") or {}
        if "tableData" not in filters.get("dataTypes", []):
            return None
        if filters.get("recordChangeScope") not in (None, table["id"]):
            return None
        if filters.get("fromSources") and "publicApi" not in filters["fromSources"]:
            return None
        kinds = set(filters.get("changeTypes") or CHANGE_TYPES)
        watched = set(filters.get("watchDataInFieldIds") or [])
        delta: dict[str, Any] = {}
        if "add" in kinds and changes["created"]:
            delta["createdRecordsById"] = changes["created"]
        if "update" in kinds:
            changed = {}
            for rid, entry in changes["changed"].items():
                if watched and not watched & set(entry["current"]):
                    continue
                item: dict[str, Any] = {"current": {"cellValuesByFieldId": entry["current"]}}
                if includes.get("includePreviousCellValues"):
                    item["previous"] = {"cellValuesByFieldId": entry["previous"]}
                changed[rid] = item
            if changed:
                delta["changedRecordsById"] = changed
        if "remove" in kinds and changes["destroyed"]:
            delta["destroyedRecordIds"] = changes["destroyed"]
        return delta or None

    def _ping(self, hook: dict[str, Any], now: str) -> None:
        ping = {"base": {"id": hook["base"]}, "webhook": {"id": hook["id"]}, "timestamp": now}
        body = json.dumps(ping, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Airtable-Content-MAC": sign(hook["secret"], body)}
        self.sender.send(Delivery(hook["notificationUrl"], body, headers))
