"""Mailchimp audience actions beyond the connector contract: tags, events, GDPR erasure and list
webhooks. A mixin of :class:`connectors.mailchimp.MailchimpConnector`, which supplies the governed,
retried ``_call``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from connectors.base import Collection
from connectors.mailchimp_wire import EVENT_NAME, EVENTS, SOURCES, expect_doc, list_id_of, subscriber_hash
from hub.errors import ConfigError

T = TypeVar("T")


class AudienceActions:
    """Tags, events, erasure and webhooks of one Mailchimp account."""

    lists: Any  # the SDK's ListsApi

    def _call(self, what: str, list_id: str, fn: Callable[[], T], *, missing_ok: bool = False) -> T | None:
        raise NotImplementedError

    def forget(self, coll: Collection | str, email: str) -> bool:
        """GDPR erasure: delete the member permanently (it can't be re-imported afterwards).
        False when Mailchimp had no such member."""
        list_id = list_id_of(coll)
        done = self._call(
            "forget member",
            list_id,
            lambda: self.lists.delete_list_member_permanent(list_id, subscriber_hash(email)),
            missing_ok=True,
        )
        return done is not None

    def tag(self, coll: Collection | str, email: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
        """Activate ``add`` and deactivate ``remove`` tags on a member (tags are created on the fly)."""
        list_id = list_id_of(coll)
        tags = [{"name": n, "status": "active"} for n in add] + [{"name": n, "status": "inactive"} for n in remove]
        if tags:
            self._call(
                "tag member",
                list_id,
                lambda: self.lists.update_list_member_tags(list_id, subscriber_hash(email), {"tags": tags}),
            )

    def event(self, coll: Collection | str, email: str, name: str, properties: dict[str, Any] | None = None) -> None:
        """Record a custom event (name: 2-30 letters, digits, _ or -; properties sent as strings)."""
        list_id = list_id_of(coll)
        if not isinstance(name, str) or not EVENT_NAME.match(name):
            raise ConfigError(f"Mailchimp event names are 2-30 letters, digits, _ or -; got {name!r}")
        props = {str(k): "" if v is None else str(v) for k, v in (properties or {}).items()}
        self._call(
            "add event",
            list_id,
            lambda: self.lists.create_list_member_event(
                list_id, subscriber_hash(email), {"name": name, "properties": props}
            ),
        )

    def events(self, coll: Collection | str, email: str, count: int = 1000) -> list[dict[str, Any]]:
        """The member's custom events, newest first."""
        list_id = list_id_of(coll)
        result = self._call(
            "list events",
            list_id,
            lambda: self.lists.get_list_member_events(list_id, subscriber_hash(email), count=count),
            missing_ok=True,
        )
        return list((result or {}).get("events") or [])

    def event_once(
        self, coll: Collection | str, email: str, name: str, properties: dict[str, Any], key_property: str
    ) -> bool:
        """Record the event unless one with the same ``properties[key_property]`` is already there:
        Mailchimp has no idempotency key, so a retried action looks before it posts."""
        key = str(properties[key_property])
        for existing in self.events(coll, email):
            if existing.get("name") == name and (existing.get("properties") or {}).get(key_property) == key:
                return False
        self.event(coll, email, name, properties)
        return True

    def create_webhook(
        self,
        coll: Collection | str,
        url: str,
        events: Iterable[str] = ("subscribe", "unsubscribe", "profile", "cleaned", "upemail"),
        sources: Iterable[str] = ("user", "admin"),
    ) -> dict[str, Any]:
        """Register a list webhook (Mailchimp GETs ``url`` first, so the receiver must be up)."""
        list_id = list_id_of(coll)
        on_events, on_sources = set(events), set(sources)
        unknown = sorted((on_events - set(EVENTS)) | (on_sources - set(SOURCES)))
        if unknown:
            raise ConfigError(
                f"unknown Mailchimp webhook events/sources {unknown}; events: {EVENTS}, sources: {SOURCES}"
            )
        body = {
            "url": url,
            "events": {e: e in on_events for e in EVENTS},
            "sources": {s: s in on_sources for s in SOURCES},
        }
        return expect_doc(
            self._call("create webhook", list_id, lambda: self.lists.create_list_webhook(list_id, body)),
            "create webhook",
            list_id,
        )

    def list_webhooks(self, coll: Collection | str) -> list[dict[str, Any]]:
        list_id = list_id_of(coll)
        result = expect_doc(
            self._call("list webhooks", list_id, lambda: self.lists.get_list_webhooks(list_id)),
            "list webhooks",
            list_id,
        )
        return list(result.get("webhooks") or [])

    def delete_webhook(self, coll: Collection | str, webhook_id: str) -> None:
        list_id = list_id_of(coll)
        self._call(
            "delete webhook",
            list_id,
            lambda: self.lists.delete_list_webhook(list_id, webhook_id),
            missing_ok=True,
        )
