"""Mailchimp audiences as a system of record, through mailchimp-marketing.

A :class:`~connectors.base.Collection` names a list (audience) by id; a record is a member keyed by
its subscriber hash (MD5 of the lowercased email), and its fields are the member JSON as Mailchimp
returns it, merge fields nested under ``merge_fields`` (writes may also say ``merge_fields.FNAME``).

Mailchimp allows 10 simultaneous connections per API key, not a request rate, so every request
holds a slot of a Redis-shared :class:`~connectors.governor.ConcurrencyGovernor` and is retried on
its own (:func:`connectors.retry.call`). ``MAILCHIMP_HOST`` is the base URL without ``/3.0``; when
unset, the data center comes from the key's ``-us1``-style suffix, as the SDK does.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import redis
import requests
from mailchimp_marketing.api.lists_api import ListsApi

from connectors.base import Collection, FieldSpec, Record, Write, chunks
from connectors.governor import ConcurrencyGovernor
from connectors.mailchimp_actions import AudienceActions
from connectors.mailchimp_wire import (
    BATCH_LIMIT,
    CONNECTIONS,
    MEMBER_FIELDS,
    PAGE_LIMIT,
    SYSTEM,
    HttpStatus,
    MailchimpBatchError,
    MemberFailure,
    SessionApiClient,
    classify,
    dig,
    expect_doc,
    list_id_of,
    member_body,
    merge_field_body,
    subscriber_hash,
    to_record,
)
from connectors.retry import RetryPolicy, call
from hub.errors import ConfigError, PermanentError
from hub.settings import Settings

T = TypeVar("T")
__all__ = [
    "MailchimpBatchError",
    "MailchimpConnector",
    "MemberFailure",
    "classify",
    "connect",
    "subscriber_hash",
]


class MailchimpConnector(AudienceActions):
    """Members of Mailchimp lists, read and written through the official SDK."""

    system = SYSTEM

    def __init__(
        self,
        api_key: str,
        conn: redis.Redis,
        *,
        host: str | None = None,
        timeout: float = 30.0,
        policy: RetryPolicy | None = None,
        status_if_new: str = "subscribed",
        batch_size: int = BATCH_LIMIT,
    ) -> None:
        if not api_key or not isinstance(api_key, str):
            raise ConfigError("MAILCHIMP_API_KEY is empty")
        if host is None and not re.search(r"-[a-z]+[0-9]+$", api_key):
            raise ConfigError(
                "MAILCHIMP_API_KEY must end with its data center (like -us1) when MAILCHIMP_HOST is not set"
            )
        if not 1 <= batch_size <= BATCH_LIMIT:
            raise ConfigError(f"batch_size must be 1..{BATCH_LIMIT}, got {batch_size!r}")
        self.api = SessionApiClient({"api_key": api_key, "timeout": timeout})
        if host:
            base = host.rstrip("/").removesuffix("/3.0")
            self.api.host = base + "/3.0"
            self.api.server = ""  # the SDK would replace "server" anywhere in the URL
        self.lists = ListsApi(self.api)
        key = hashlib.sha256(api_key.encode()).hexdigest()[:12]
        self.inflight = ConcurrencyGovernor(conn, f"mailchimp:{key}", limit=CONNECTIONS)
        self.policy = policy or RetryPolicy()
        self.status_if_new = status_if_new
        self.batch_size = batch_size

    # -- plumbing ---------------------------------------------------------------------------------
    def _call(self, what: str, list_id: str, fn: Callable[[], T], *, missing_ok: bool = False) -> T | None:
        """One request: a connection slot, retries for transient failures, 404 → None if allowed."""

        def once() -> T:
            result = fn()
            if isinstance(result, requests.Response) and not result.ok:
                raise HttpStatus(result.status_code, result.text)
            return result

        try:
            return call(
                once,
                classify=lambda e: classify(e, list_id),
                what=f"mailchimp {what} {list_id}",
                inflight=self.inflight,
                policy=self.policy,
            )
        except PermanentError as exc:
            if missing_ok and exc.status == 404:
                return None
            raise

    # -- Connector contract -----------------------------------------------------------------------
    def get(self, coll: Collection, record_id: str) -> Record | None:
        list_id = list_id_of(coll)
        result = self._call(
            "get member",
            list_id,
            lambda: self.lists.get_list_member(list_id, record_id, exclude_fields=["_links"]),
            missing_ok=True,
        )
        if result is None:
            return None
        member = expect_doc(result, "get member", list_id)
        return None if member.get("status") == "archived" else to_record(member)

    def get_many(self, coll: Collection, record_ids: Sequence[str]) -> list[Record]:
        """Mailchimp has no multi-get: one GET per id (each under the connection governor)."""
        return [r for r in (self.get(coll, rid) for rid in record_ids) if r is not None]

    def find(self, coll: Collection, field_name: str, value: Any) -> list[Record]:
        """By ``email_address`` or ``id``: one GET; by ``unique_email_id``: a filtered list;
        by any other (dotted) field: a scan of the whole list."""
        if field_name == "email_address":
            found = self.get(coll, subscriber_hash(str(value)))
            return [found] if found is not None else []
        if field_name == "id":
            found = self.get(coll, str(value))
            return [found] if found is not None else []
        if field_name == "unique_email_id":
            return list(self._pages(list_id_of(coll), {"unique_email_id": str(value)}, PAGE_LIMIT, None, {}))
        return [r for r in self.iterate(coll) if dig(r.fields, field_name) == value]

    def iterate(
        self,
        coll: Collection,
        *,
        where: dict[str, Any] | None = None,
        changed_since: datetime | None = None,
        page_size: int | None = None,
    ) -> Iterator[Record]:
        """Members page by page (count/offset); archived ones only with ``where={"status": "archived"}``.
        ``changed_since`` asks Mailchimp for ``since_last_changed`` one second early (its times are
        whole seconds and the filter is strict) and keeps members changed at or after it."""
        count = page_size or 500
        if not 1 <= count <= PAGE_LIMIT:
            raise ConfigError(f"page_size must be 1..{PAGE_LIMIT}, got {page_size!r}")
        rest = dict(where or {})
        params: dict[str, Any] = {}
        if "status" in rest:
            params["status"] = rest.pop("status")
        since = None
        if changed_since is not None:
            since = (changed_since if changed_since.tzinfo else changed_since.replace(tzinfo=UTC)).astimezone(UTC)
            since = since.replace(microsecond=0)
            params["since_last_changed"] = (since - timedelta(seconds=1)).isoformat()
        return self._pages(list_id_of(coll), params, count, since, rest)

    def _pages(
        self, list_id: str, params: dict[str, Any], count: int, since: datetime | None, rest: dict[str, Any]
    ) -> Iterator[Record]:
        offset = 0
        while True:
            page = expect_doc(
                self._call(
                    "list members",
                    list_id,
                    lambda o=offset: self.lists.get_list_members_info(
                        list_id, count=count, offset=o, exclude_fields=["members._links", "_links"], **params
                    ),
                ),
                "list members",
                list_id,
            )
            members = page.get("members") or []
            for member in members:
                if member.get("status") == "archived" and params.get("status") != "archived":
                    continue
                record = to_record(member)
                if since is not None and (record.updated_at is None or record.updated_at < since):
                    continue
                if all(dig(record.fields, k) == v for k, v in rest.items()):
                    yield record
            offset += len(members)
            if len(members) < count or offset >= int(page.get("total_items", 0)):
                return

    def upsert_many(self, coll: Collection, writes: Sequence[Write]) -> list[Record]:
        """Writes with an email go through batch subscribe (``update_existing``, ≤ 500 a request);
        a write by ``id`` without a matching email is a PATCH (that is how an email changes).
        Refused members never vanish: :class:`MailchimpBatchError` lists them after the rest is done."""
        list_id = list_id_of(coll)
        bad = sorted({str(w.match) for w in writes if w.match not in (None, "email_address", "id")})
        if bad:
            raise ConfigError(f"Mailchimp members match on email_address (or id) only, got match={bad}")
        records: list[Record | None] = [None] * len(writes)
        failures: list[MemberFailure] = []
        batch: list[tuple[int, dict[str, Any]]] = []
        for i, w in enumerate(writes):
            body = member_body(w.fields)
            email = body.get("email_address")
            if w.id and (not isinstance(email, str) or subscriber_hash(email) != w.id):
                self._patch(list_id, i, w.id, body, records, failures)
            elif isinstance(email, str) and email:
                if "status" not in body:
                    body.setdefault("status_if_new", self.status_if_new)
                batch.append((i, body))
            else:
                failures.append(MemberFailure(i, "", "a write needs email_address (or an id)", field="email_address"))
        for part in chunks(batch, self.batch_size):
            self._batch(list_id, part, records, failures)
        if failures:
            raise MailchimpBatchError(list_id, records, sorted(failures, key=lambda f: f.index))
        return [r for r in records if r is not None]

    def _patch(
        self,
        list_id: str,
        i: int,
        member_id: str,
        body: dict[str, Any],
        records: list[Record | None],
        failures: list[MemberFailure],
    ) -> None:
        try:
            result = self._call(
                "update member", list_id, lambda: self.lists.update_list_member(list_id, member_id, body)
            )
        except PermanentError as exc:
            failures.append(MemberFailure(i, str(body.get("email_address", "")), str(exc), field=exc.field))
            return
        records[i] = to_record(expect_doc(result, "update member", list_id))

    def _batch(
        self,
        list_id: str,
        part: Sequence[tuple[int, dict[str, Any]]],
        records: list[Record | None],
        failures: list[MemberFailure],
    ) -> None:
        payload = {"members": [body for _, body in part], "update_existing": True}
        result = expect_doc(
            self._call("batch subscribe", list_id, lambda: self.lists.batch_list_members(list_id, payload)),
            "batch subscribe",
            list_id,
        )
        written = {
            str(m["email_address"]).lower(): m
            for m in (result.get("new_members") or []) + (result.get("updated_members") or [])
        }
        refused = {str(e.get("email_address", "")).lower(): e for e in result.get("errors") or []}
        for i, body in part:
            email = str(body["email_address"]).lower()
            if email in written:
                records[i] = to_record(written[email])
            else:
                err = refused.get(email, {"error": "missing from Mailchimp's batch response"})
                failures.append(
                    MemberFailure(
                        i,
                        body["email_address"],
                        str(err.get("error", "")),
                        str(err.get("error_code", "")),
                        str(err.get("field", "")),
                    )
                )

    def delete(self, coll: Collection, record_ids: Sequence[str]) -> None:
        """Archive the members (Mailchimp's DELETE); already gone is fine."""
        list_id = list_id_of(coll)
        for rid in record_ids:
            self._call(
                "archive member",
                list_id,
                lambda r=rid: self.lists.delete_list_member(list_id, r),
                missing_ok=True,
            )

    def ensure_schema(self, coll: Collection, fields: Sequence[FieldSpec]) -> list[str]:
        """Create the merge fields that are missing (tags ≤ 10 chars, ``merge_fields.`` prefix optional)."""
        list_id = list_id_of(coll)
        wanted = {}  # checked before any request
        for spec in fields:
            tag = spec.name.removeprefix("merge_fields.").upper()
            if spec.name not in MEMBER_FIELDS:
                wanted.setdefault(tag, merge_field_body(spec, tag))
        current = expect_doc(
            self._call(
                "merge fields",
                list_id,
                lambda: self.lists.get_list_merge_fields(
                    list_id, count=PAGE_LIMIT, fields=["merge_fields.tag", "total_items"]
                ),
            ),
            "merge fields",
            list_id,
        )
        tags = {str(f["tag"]).upper() for f in current.get("merge_fields") or []}
        created = []
        for tag, body in wanted.items():
            if tag not in tags:
                self._call("add merge field", list_id, lambda b=body: self.lists.add_list_merge_field(list_id, b))
                created.append(tag)
        return created


def connect(settings: Settings, conn: redis.Redis, **options: Any) -> MailchimpConnector:
    """The connector for ``MAILCHIMP_API_KEY`` (and ``MAILCHIMP_HOST`` when set)."""
    api_key = settings.require("MAILCHIMP_API_KEY", "the Mailchimp connector")
    return MailchimpConnector(api_key, conn, host=settings.mailchimp_host, **options)
