"""Airtable as a system of record, through pyairtable.

Every HTTP request is one call of :func:`connectors.retry.call`: it takes a slot of the base's
shared quota (5 requests/s per base, booked in Redis so all workers together stay under it), is
classified on failure and retried alone. That is why writes are chunked here (10 records per
request) and pages are fetched one request at a time: a failed chunk or page is retried without
redoing the ones before it. Upserts use Airtable's ``performUpsert`` so a retried write cannot
create a duplicate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis
import requests
from pyairtable import Api
from pyairtable.api.table import Table
from pyairtable.formulas import (
    AND,
    EQ,
    IS_AFTER,
    LAST_MODIFIED_TIME,
    OR,
    RECORD_ID,
    Field,
    Formula,
    match,
    to_formula_str,
)

from connectors.airtable_webhooks import AirtableWebhooks, verify_ping
from connectors.base import Collection, FieldSpec, Record, Write, chunks
from connectors.governor import RateGovernor
from connectors.retry import RetryPolicy, call, parse_retry_after
from hub.errors import ConfigError, HubError, PermanentError, RateLimited, TransientError
from hub.settings import Settings

T = TypeVar("T")
SYSTEM = "airtable"
MAX_BATCH = 10  # records per write request (Airtable's limit)
MAX_PAGE = 100  # records per page
IDS_PER_QUERY = 50  # record ids per RECORD_ID() lookup, well under the URL limit

CHECKBOX = {"icon": "check", "color": "greenBright"}
DATE = {"dateFormat": {"name": "iso"}}
FIELD_TYPES: dict[str, tuple[str, dict[str, Any] | None]] = {
    "string": ("singleLineText", None),
    "text": ("multilineText", None),
    "email": ("email", None),
    "phone": ("phoneNumber", None),
    "number": ("number", {"precision": 2}),
    "bool": ("checkbox", CHECKBOX),
    "date": ("date", DATE),
    "datetime": ("dateTime", {**DATE, "timeFormat": {"name": "24hour"}, "timeZone": "utc"}),
    "enum": ("singleSelect", None),
}
NOT_PRIMARY = frozenset({"checkbox", "singleSelect", "multipleSelects", "multipleRecordLinks"})
_FIELD_IN_MESSAGE = (
    re.compile(r'Unknown field name: "(.+)"'),
    re.compile(r'Field "(.+?)" cannot accept'),
    re.compile(r"for field (.+?)\.?$"),
)
_OPTION_IN_MESSAGE = re.compile(r'select option ""?(.+?)""?$')


def _error_body(resp: requests.Response) -> tuple[str, str]:
    """(type, message) from any of Airtable's error shapes."""
    try:
        body = resp.json()
    except ValueError:
        return "", resp.text[:200]
    err = body.get("error") if isinstance(body, dict) else None
    if err is None and isinstance(body, dict) and body.get("errors"):
        first = body["errors"][0]
        return str(first.get("error", "")), str(first.get("message", ""))
    if isinstance(err, dict):
        return str(err.get("type", "")), str(err.get("message", ""))
    return str(err or ""), ""


def _field_of(message: str, values: Sequence[dict[str, Any]]) -> str:
    """The field an Airtable error is about: named in the message, or holding the bad option."""
    for pattern in _FIELD_IN_MESSAGE:
        if m := pattern.search(message):
            return m.group(1)
    if m := _OPTION_IN_MESSAGE.search(message):
        option = m.group(1)
        for fields in values:
            for name, value in fields.items():
                if value == option or (isinstance(value, list) and option in value):
                    return name
    return ""


def _instant(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _utc(value: Any) -> Any:
    """Aware UTC datetimes, so pyairtable's formula helpers write ``...Z``."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    return value


def _equals(values: dict[str, Any]) -> str:
    """A formula matching every ``field: value`` (``None`` matches a blank cell), escaped by
    pyairtable's formula helpers."""
    parts = [f"{Field(k)}=BLANK()" if v is None else to_formula_str(match({k: _utc(v)})) for k, v in values.items()]
    return parts[0] if len(parts) == 1 else to_formula_str(AND(*(Formula(p) for p in parts)))


class AirtableConnector(AirtableWebhooks):
    """:class:`connectors.base.Connector` for Airtable (plus webhook management)."""

    system = SYSTEM

    def __init__(
        self,
        api_key: str,
        *,
        endpoint_url: str = "https://api.airtable.com",
        conn: redis.Redis | None = None,
        rate: float = 5.0,
        margin: float = 0.05,
        penalty_seconds: float = 30.0,
        timeout: tuple[int, int] = (5, 30),
        typecast: bool = False,
        policy: RetryPolicy | None = None,
    ) -> None:
        if not api_key:
            raise ConfigError("the Airtable API key (a personal access token) is empty")
        self.api = Api(api_key, endpoint_url=endpoint_url, retry_strategy=None, timeout=timeout)
        self.conn = conn
        self.rate = rate
        self.margin = margin
        self.penalty_seconds = penalty_seconds
        self.typecast = typecast
        self.policy = policy
        self._governors: dict[str, RateGovernor] = {}
        self._schemas: dict[str, dict[str, Any] | None] = {}

    # -- plumbing --------------------------------------------------------------------------------
    def governor(self, base_id: str) -> RateGovernor | None:
        if self.conn is None:
            return None
        if base_id not in self._governors:
            self._governors[base_id] = RateGovernor(
                self.conn, f"airtable:base:{base_id}", rate=self.rate, per=1.0, margin=self.margin
            )
        return self._governors[base_id]

    def classify(self, exc: Exception, *, table: str = "", values: Sequence[dict[str, Any]] = ()) -> HubError:
        """Airtable's answer as a hub error: retry 429/5xx/network, name table and field otherwise."""
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            status = exc.response.status_code
            kind, message = _error_body(exc.response)
            text = f"Airtable answered {status} {kind}: {message}".rstrip(": ")
            if status == 429:
                return RateLimited(text, retry_after=self.penalty_seconds)
            if status >= 500 or status == 408:
                wait = parse_retry_after(exc.response.headers.get("Retry-After"))
                return TransientError(text, retry_after=wait)
            field = _field_of(message, values)
            return PermanentError(text, system=SYSTEM, obj=table, field=field, status=status)
        if isinstance(exc, requests.RequestException):
            return TransientError(f"Airtable could not be reached: {exc}")
        return PermanentError(f"Airtable call failed: {exc!r}", system=SYSTEM, obj=table)

    def _call(
        self, coll: Collection, what: str, fn: Callable[[], T], values: Sequence[dict[str, Any]] = ()
    ) -> T:
        if not coll.base:
            raise ConfigError(f"Airtable collection {coll.name!r} has no base id")
        return call(
            fn, classify=lambda e: self.classify(e, table=coll.name, values=values),
            what=f"airtable {what} {coll}", governor=self.governor(coll.base), policy=self.policy,
        )

    def _table(self, coll: Collection) -> Table:
        return self.api.table(coll.base, coll.name)

    def _schema(self, coll: Collection, *, fresh: bool = False) -> dict[str, Any] | None:
        """The table's schema (cached), or None when the table does not exist or the token
        cannot read schemas."""
        key = f"{coll.base}/{coll.name}"
        if fresh or key not in self._schemas:
            url = self.api.base(coll.base).urls.tables
            try:
                tables = self._call(coll, "schema", lambda: self.api.get(url))["tables"]
            except PermanentError:
                tables = []
            self._schemas[key] = next((t for t in tables if coll.name in (t["id"], t["name"])), None)
        return self._schemas[key]

    def _record(self, coll: Collection, raw: dict[str, Any]) -> Record:
        fields = raw.get("fields", {})
        table = self._schema(coll)
        stamps = [f["name"] for f in (table or {}).get("fields", []) if f["type"] == "lastModifiedTime"]
        modified = stamps[0] if stamps else None
        return Record(
            id=raw["id"], fields=fields, created_at=_instant(raw.get("createdTime")),
            updated_at=_instant(fields.get(modified)) if modified else None,
        )

    # -- reading ---------------------------------------------------------------------------------
    def get(self, coll: Collection, record_id: str) -> Record | None:
        table = self._table(coll)

        def fetch() -> dict[str, Any] | None:
            try:
                return dict(table.get(record_id))
            except requests.HTTPError as exc:
                if exc.response is not None and exc.response.status_code == 404:
                    return None
                raise

        raw = self._call(coll, "get", fetch)
        return None if raw is None else self._record(coll, raw)

    def get_many(self, coll: Collection, record_ids: Sequence[str]) -> list[Record]:
        found: dict[str, Record] = {}
        for ids in chunks(list(dict.fromkeys(record_ids)), IDS_PER_QUERY):
            formula = OR(*(EQ(RECORD_ID(), i) for i in ids))
            found.update((r.id, r) for r in self._pages(coll, {"formula": to_formula_str(formula)}))
        return [found[i] for i in record_ids if i in found]

    def find(self, coll: Collection, field_name: str, value: Any) -> list[Record]:
        return list(self._pages(coll, {"formula": _equals({field_name: value})}))

    def iterate(
        self,
        coll: Collection,
        *,
        where: dict[str, Any] | None = None,
        changed_since: datetime | None = None,
        page_size: int | None = None,
    ) -> Iterator[Record]:
        parts = [_equals(where)] if where else []
        if changed_since is not None:
            parts.append(to_formula_str(IS_AFTER(LAST_MODIFIED_TIME(), _utc(changed_since))))
        options: dict[str, Any] = {"page_size": min(page_size or MAX_PAGE, MAX_PAGE)}
        if parts:
            options["formula"] = parts[0] if len(parts) == 1 else f"AND({', '.join(parts)})"
        return self._pages(coll, options)

    def _pages(self, coll: Collection, options: dict[str, Any]) -> Iterator[Record]:
        """One request per page; a failed page is retried from its own offset."""
        table = self._table(coll)
        offset: str | None = None
        while True:
            opts = {**options, **({"offset": offset} if offset else {})}
            page = self._call(coll, "list", lambda opts=opts: self.api.request(
                "GET", table.urls.records, fallback=("POST", table.urls.records_post), options=opts))
            for raw in page.get("records", []):
                yield self._record(coll, raw)
            offset = page.get("offset")
            if not offset:
                return

    # -- writing ---------------------------------------------------------------------------------
    def upsert_many(self, coll: Collection, writes: Sequence[Write]) -> list[Record]:
        results: list[Record | None] = [None] * len(writes)
        for kind, key, indexes in _runs(writes):
            for chunk in chunks(indexes, MAX_BATCH):
                batch = [writes[i] for i in chunk]
                for i, raw in zip(chunk, self._write(coll, kind, key, batch), strict=True):
                    results[i] = self._record(coll, raw)
        return [r for r in results if r is not None]

    def _write(self, coll: Collection, kind: str, key: str, batch: list[Write]) -> list[dict[str, Any]]:
        table, values = self._table(coll), [w.fields for w in batch]
        if kind == "update":
            updates = [{"id": w.id, "fields": w.fields} for w in batch]
            done = self._call(coll, "update", lambda: table.batch_update(updates, typecast=self.typecast),
                              values)
            return list(done)
        if kind == "upsert":
            for w in batch:
                if key not in w.fields:
                    raise PermanentError(f"an upsert matching on {key!r} needs a value for it", system=SYSTEM,
                                         obj=coll.name, field=key)
            records = [{"fields": w.fields} for w in batch]
            result = self._call(coll, "upsert", lambda: table.batch_upsert(
                records, key_fields=[key], typecast=self.typecast), values)
            return list(result["records"])
        made = self._call(coll, "create", lambda: table.batch_create(values, typecast=self.typecast), values)
        return list(made)

    def delete(self, coll: Collection, record_ids: Sequence[str]) -> None:
        table = self._table(coll)
        for ids in chunks(list(dict.fromkeys(record_ids)), MAX_BATCH):
            try:
                self._call(coll, "delete", lambda ids=ids: table.batch_delete(ids))
            except PermanentError as exc:
                if exc.status != 404:
                    raise
                for one in ids:  # some were already gone (a retried delete): delete the rest one by one
                    try:
                        self._call(coll, "delete", lambda one=one: table.delete(one))
                    except PermanentError as inner:
                        if inner.status != 404:
                            raise

    # -- schema ----------------------------------------------------------------------------------
    @staticmethod
    def field_config(spec: FieldSpec) -> dict[str, Any]:
        """Airtable's field model for a hub :class:`FieldSpec`."""
        if spec.type not in FIELD_TYPES:
            known = sorted(FIELD_TYPES)
            raise ConfigError(f"field {spec.name!r}: unknown type {spec.type!r}; known: {known}")
        type_, options = FIELD_TYPES[spec.type]
        config: dict[str, Any] = {"name": spec.name, "type": type_}
        if spec.label and spec.label != spec.name:
            config["description"] = spec.label
        if spec.type == "enum":
            options = {"choices": [{"name": str(o)} for o in spec.options]}
        if options is not None:
            config["options"] = json.loads(json.dumps(options))
        return config

    def ensure_schema(self, coll: Collection, fields: Sequence[FieldSpec]) -> list[str]:
        """Create the table if missing, then the missing fields (and missing enum choices)."""
        configs = [self.field_config(f) for f in fields]
        table = self._schema(coll, fresh=True)
        base = self.api.base(coll.base)
        if table is None:
            first = next((i for i, c in enumerate(configs) if c["type"] not in NOT_PRIMARY), None)
            if first is None:
                raise ConfigError(f"Airtable table {coll}: its first field must be text, a number or a date, "
                                  f"got only {[c['type'] for c in configs]}")
            configs.insert(0, configs.pop(first))
            body = {"name": coll.name, "fields": configs}
            self._call(coll, "create table", lambda: self.api.post(base.urls.tables, json=body))
            created = [c["name"] for c in configs]
        else:
            created = []
            existing = {f["name"]: f for f in table["fields"]}
            url = f"{base.urls.tables}/{table['id']}/fields"
            for config in configs:
                have = existing.get(config["name"])
                if have is None:
                    self._call(coll, "create field", lambda c=config: self.api.post(url, json=c))
                    created.append(config["name"])
                elif have["type"] == "singleSelect" and config["type"] == "singleSelect":
                    self._add_choices(coll, f"{url}/{have['id']}", have, config)
        self._schema(coll, fresh=True)
        return created

    def _add_choices(self, coll: Collection, url: str, have: dict[str, Any], config: dict[str, Any]) -> None:
        current = have["options"]["choices"]
        known = {c["name"] for c in current}
        missing = [c for c in config["options"]["choices"] if c["name"] not in known]
        if missing:
            body = {"options": {"choices": [*current, *missing]}}
            self._call(coll, "update field", lambda: self.api.patch(url, json=body))


def _runs(writes: Sequence[Write]) -> Iterator[tuple[str, str, list[int]]]:
    """Consecutive writes of one kind (update / upsert on one field / create), in order."""
    run: list[int] = []
    current: tuple[str, str] | None = None
    for i, w in enumerate(writes):
        if not isinstance(w.fields, dict):
            raise PermanentError(f"write #{i}: fields must be a mapping, got {type(w.fields).__name__}",
                                 system=SYSTEM)
        kind = ("update", "") if w.id else ("upsert", w.match) if w.match else ("create", "")
        if kind != current and run:
            yield (*current, run)  # type: ignore[misc]
            run = []
        current = kind
        run.append(i)
    if run and current is not None:
        yield (*current, run)


def connect(settings: Settings, conn: redis.Redis | None = None) -> AirtableConnector:
    """The connector configured from the environment (``AIRTABLE_API_KEY``, ``AIRTABLE_ENDPOINT_URL``)."""
    return AirtableConnector(
        settings.require("AIRTABLE_API_KEY", "the Airtable connector"),
        endpoint_url=settings.airtable_endpoint,
        conn=conn,
    )


__all__ = ["AirtableConnector", "connect", "verify_ping"]
