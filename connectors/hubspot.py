"""HubSpot CRM as a system of record, through hubspot-api-client (``hubspot.Client``).

``Collection.name`` is the object type (``contacts``, ``companies``, ``deals``, ``tickets``,
``tasks``, ``notes``). Every request books a slot on the token's shared quota (190 requests per
10 s) and, for searches, on the search quota (4 per second) before it leaves, and is retried on
its own when it fails transiently. Writes go in batches of 100; batch results come back in no
particular order, so each input carries an ``objectWriteTraceId`` to put them back in order.

Schema and webhook management (properties, pipelines, associations, subscriptions) live in
:mod:`connectors.hubspot_admin`; this module is the record contract.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import hubspot
import redis
from hubspot.crm.objects import (
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchInputSimplePublicObjectId,
    BatchReadInputSimplePublicObjectId,
    PublicObjectSearchRequest,
)
from hubspot.discovery.discovery_base import DiscoveryBase
from urllib3.util.retry import Retry

from connectors import hubspot_admin
from connectors.base import Collection, FieldSpec, Record, Write, chunks
from connectors.governor import RateGovernor
from connectors.hubspot_wire import SYSTEM, classify, epoch_ms, to_hubspot, token_key
from connectors.retry import RetryPolicy, call
from hub import fastjson
from hub.errors import ConfigError, HubError, PermanentError, RateLimited
from hub.settings import Settings

T = TypeVar("T")
BATCH_MAX = 100
LIST_MAX = 100
SEARCH_MAX = 200
SEARCH_CAP = 10_000  # HubSpot serves at most this many results of one search query
MODIFIED = {"contacts": "lastmodifieddate"}  # every other object keeps hs_lastmodifieddate


def _instant(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)


def _raw_record(obj: dict[str, Any]) -> Record:
    """A record from the API's JSON (as :func:`_record` from the SDK's model)."""
    return Record(
        id=str(obj["id"]),
        fields=dict(obj.get("properties") or {}),
        created_at=_instant(obj.get("createdAt")),
        updated_at=_instant(obj.get("updatedAt")),
    )


def _record(obj: Any) -> Record:
    return Record(
        id=str(obj.id),
        fields=dict(obj.properties or {}),
        created_at=obj.created_at,
        updated_at=obj.updated_at,
    )


class _ApiCache:
    """The SDK's ``api_factory``: its default builds a new API client, with a new connection pool,
    on every ``client.crm...`` access; one per API class here keeps connections alive between calls."""

    def __init__(self) -> None:
        self._apis: dict[tuple[str, str], Any] = {}

    def __call__(self, package: Any, api_name: str, config: dict[str, Any]) -> Any:
        key = (package.__name__, api_name)
        api = self._apis.get(key)
        if api is None:
            api = self._apis[key] = DiscoveryBase._default_api_factory(package, api_name, config)
        return api


class HubSpotConnector:
    """The :class:`connectors.base.Connector` contract over one HubSpot private-app token."""

    system = SYSTEM

    def __init__(
        self,
        access_token: str,
        conn: redis.Redis,
        *,
        host: str = "https://api.hubapi.com",
        developer_api_key: str | None = None,
        rate: float = 190,
        per: float = 10.0,
        search_rate: float = 4.0,
        timeout: float = 30.0,
        policy: RetryPolicy | None = None,
        properties: Mapping[str, Sequence[str]] | None = None,
        property_group: str = "hub",
        search_cap: int = SEARCH_CAP,
    ) -> None:
        if not access_token:
            raise ConfigError("HubSpot access token is empty (set HUBSPOT_ACCESS_TOKEN to a private app token)")
        if not host.startswith(("http://", "https://")):
            raise ConfigError(f"HubSpot host must be an http(s) URL, got {host!r} (HUBSPOT_HOST)")
        self.host = host.rstrip("/")
        # retry=Retry(0): no silent urllib3 retries; connectors.retry decides, under the quota.
        self.client = hubspot.Client.create(
            access_token=access_token, host=self.host, retry=Retry(0, read=False), api_factory=_ApiCache()
        )
        self.conn = conn
        self.developer_api_key = developer_api_key
        self.timeout = timeout
        self.policy = policy or RetryPolicy()
        self.properties = {k: list(v) for k, v in (properties or {}).items()}
        self.property_group = property_group
        self.search_cap = search_cap
        key = token_key(access_token)
        self.governor = RateGovernor(conn, f"hubspot:token:{key}", rate=rate, per=per, margin=0.05)
        # Searches have the tightest quota (4 in any second): 5 % left 50 ms of slack per second, less
        # than a request can lag behind its slot on a loaded machine; 10 % leaves 100 ms.
        self.search_governor = RateGovernor(conn, f"hubspot:search:{key}", rate=search_rate, per=1.0, margin=0.1)
        self.developer_governor = None
        if developer_api_key:
            dev = f"hubspot:token:{token_key(developer_api_key)}"
            self.developer_governor = RateGovernor(conn, dev, rate=rate, per=per, margin=0.05)
        self._known: dict[str, list[str]] = {}

    # -- plumbing -------------------------------------------------------------------------------
    def _call(
        self,
        what: str,
        fn: Callable[[], T],
        obj: str = "",
        *,
        search: bool = False,
        governor: RateGovernor | None = None,
        field: str = "",
    ) -> T:
        """One request: quota slot(s), then the call, retried alone on transient failure.
        ``field`` names the property at fault when HubSpot's error does not (an upsert key).

        The slots are booked here rather than by ``call``: a search needs two, and the search slot
        must be the last one waited for, or two searches could leave closer than 1/4 s apart."""
        main = governor or self.governor

        def run() -> T:
            with main.slot(), (self.search_governor.slot() if search else nullcontext()):
                return fn()

        def judge(exc: Exception) -> HubError:
            err = classify(exc, obj)
            if isinstance(err, PermanentError) and field and not err.field:
                err.field = field
            if isinstance(err, RateLimited):  # push back whichever quota HubSpot says we overran
                spent = self.search_governor if getattr(err, "policy", "") == "SECONDLY" else main
                spent.penalize(err.retry_after or 1.0)
            return err

        return call(run, classify=judge, what=f"hubspot {what}", policy=self.policy)

    def fields_for(self, coll: Collection) -> list[str]:
        """Properties to read: those the collection names, else those configured for the type, else
        every property it has."""
        if coll.fields:
            return list(coll.fields)
        if coll.name in self.properties:
            return self.properties[coll.name]
        if coll.name not in self._known:
            api = self.client.crm.properties.core_api
            found = self._call(
                "list properties", lambda: api.get_all(coll.name, _request_timeout=self.timeout), coll.name
            )
            self._known[coll.name] = [p.name for p in found.results]
        return self._known[coll.name]

    def forget_properties(self, object_type: str) -> None:
        self._known.pop(object_type, None)

    # -- reads ----------------------------------------------------------------------------------
    def get(self, coll: Collection, record_id: str) -> Record | None:
        found = self.get_many(coll, [record_id])
        return found[0] if found else None

    def get_many(self, coll: Collection, record_ids: Sequence[str]) -> list[Record]:
        api, fields, out = self.client.crm.objects.batch_api, self.fields_for(coll), []
        by_id: dict[str, Record] = {}
        for part in chunks(list(dict.fromkeys(str(i) for i in record_ids)), BATCH_MAX):
            body = BatchReadInputSimplePublicObjectId(
                inputs=[{"id": i} for i in part], properties=fields, properties_with_history=[]
            )
            # The hot read of every sync: take the SDK's raw response (its `_preload_content=False`)
            # instead of building models and parsing each timestamp with dateutil.
            resp = self._call(
                "batch read",
                partial(api.read, coll.name, body, _request_timeout=self.timeout, _preload_content=False),
                coll.name,
            )
            by_id.update((str(o["id"]), _raw_record(o)) for o in fastjson.loads(resp.data).get("results") or [])
        for rid in record_ids:
            if str(rid) in by_id:
                out.append(by_id[str(rid)])
        return out

    def find(self, coll: Collection, field_name: str, value: Any) -> list[Record]:
        return list(self._search(coll, [self._filter(field_name, value)], None, SEARCH_MAX))

    def iterate(
        self,
        coll: Collection,
        *,
        where: dict[str, Any] | None = None,
        changed_since: datetime | None = None,
        page_size: int | None = None,
    ) -> Iterator[Record]:
        if not where and changed_since is None:
            return self._list(coll, min(page_size or LIST_MAX, LIST_MAX))
        filters = [self._filter(k, v) for k, v in (where or {}).items()]
        since = None if changed_since is None else epoch_ms(to_hubspot(changed_since))
        return self._search(coll, filters, since, min(page_size or SEARCH_MAX, SEARCH_MAX))

    @staticmethod
    def _filter(name: str, value: Any) -> dict[str, Any]:
        if value is None:
            return {"propertyName": name, "operator": "NOT_HAS_PROPERTY"}
        if isinstance(value, list | tuple | set | frozenset):
            return {"propertyName": name, "operator": "IN", "values": [to_hubspot(v) for v in value]}
        return {"propertyName": name, "operator": "EQ", "value": to_hubspot(value)}

    def _list(self, coll: Collection, limit: int) -> Iterator[Record]:
        api, fields, after = self.client.crm.objects.basic_api, self.fields_for(coll), None
        joined = [",".join(fields)] if fields else None  # one comma-separated parameter keeps the URL short
        while True:
            page = self._call(
                "list",
                partial(
                    api.get_page, coll.name, limit=limit, after=after, properties=joined, _request_timeout=self.timeout
                ),
                coll.name,
            )
            yield from (_record(o) for o in page.results)
            after = page.paging.next.after if page.paging and page.paging.next else None
            if after is None:
                return

    def _search(
        self, coll: Collection, filters: list[dict[str, Any]], since: int | None, limit: int
    ) -> Iterator[Record]:
        """Search page by page, sorted by last modification; past the 10,000-result cap, start a new
        window at the last modification time seen (skipping the records already given)."""
        api, fields = self.client.crm.objects.search_api, self.fields_for(coll)
        mod = MODIFIED.get(coll.name, "hs_lastmodifieddate")
        op, boundary = "GT", None
        seen: set[str] = set()
        while True:
            window = list(filters) + (
                [{"propertyName": mod, "operator": op, "value": str(since)}] if since is not None else []
            )
            after, fresh, last_ts, last_ids = 0, 0, since, set(seen)
            while True:
                req = PublicObjectSearchRequest(
                    filter_groups=[{"filters": window}] if window else [],
                    properties=[*fields, mod],
                    limit=limit,
                    sorts=[{"propertyName": mod, "direction": "ASCENDING"}],
                    after=str(after) if after else None,
                )
                page = self._call(
                    "search",
                    partial(api.do_search, coll.name, req, _request_timeout=self.timeout),
                    coll.name,
                    search=True,
                )
                for obj in page.results:
                    ts = epoch_ms((obj.properties or {}).get(mod))
                    if ts is not None and ts == boundary and str(obj.id) in seen:
                        continue
                    if ts != last_ts:
                        last_ts, last_ids = ts, set()
                    last_ids.add(str(obj.id))
                    fresh += 1
                    yield _record(obj)
                nxt = page.paging.next.after if page.paging and page.paging.next else None
                if nxt is None:
                    return
                if int(nxt) + limit > self.search_cap:
                    break
                after = int(nxt)
            if not fresh or last_ts is None:
                raise PermanentError(
                    f"more than {self.search_cap} records share one {mod}; cannot page past HubSpot's search cap",
                    system=SYSTEM,
                    obj=coll.name,
                    field=mod,
                )
            since, op, boundary, seen = last_ts, "GTE", last_ts, last_ids

    # -- writes ---------------------------------------------------------------------------------
    def upsert_many(self, coll: Collection, writes: Sequence[Write]) -> list[Record]:
        out: list[Record | None] = [None] * len(writes)
        updates = [(i, w) for i, w in enumerate(writes) if w.id]
        matched: dict[str, list[tuple[int, Write]]] = {}
        creates = []
        for i, w in enumerate(writes):
            if w.id:
                continue
            if w.match:
                if w.fields.get(w.match) in (None, ""):
                    raise PermanentError(
                        f"write #{i} matches on {w.match!r} but has no value for it",
                        system=SYSTEM,
                        obj=coll.name,
                        field=w.match,
                    )
                matched.setdefault(w.match, []).append((i, w))
            else:
                creates.append((i, w))
        api = self.client.crm.objects.batch_api
        for part in chunks(updates, BATCH_MAX):
            body = BatchInputSimplePublicObjectBatchInput(
                inputs=[{"id": str(w.id), "properties": self._props(w), "objectWriteTraceId": str(i)} for i, w in part]
            )
            self._place(
                out,
                part,
                self._call(
                    "batch update",
                    partial(api.update, coll.name, body, _request_timeout=self.timeout),
                    coll.name,
                ),
                coll,
            )
        for prop, items in matched.items():
            for part in chunks(items, BATCH_MAX):
                body = BatchInputSimplePublicObjectBatchInputUpsert(
                    inputs=[
                        {
                            "id": to_hubspot(w.fields[prop]),
                            "idProperty": prop,
                            "properties": self._props(w),
                            "objectWriteTraceId": str(i),
                        }
                        for i, w in part
                    ]
                )
                self._place(
                    out,
                    part,
                    self._call(
                        "batch upsert",
                        partial(api.upsert, coll.name, body, _request_timeout=self.timeout),
                        coll.name,
                        field=prop,
                    ),
                    coll,
                )
        for part in chunks(creates, BATCH_MAX):
            body = BatchInputSimplePublicObjectBatchInputForCreate(
                inputs=[{"properties": self._props(w), "objectWriteTraceId": str(i)} for i, w in part]
            )
            self._place(
                out,
                part,
                self._call(
                    "batch create",
                    partial(api.create, coll.name, body, _request_timeout=self.timeout),
                    coll.name,
                ),
                coll,
            )
        return [r for r in out if r is not None]

    @staticmethod
    def _props(w: Write) -> dict[str, str]:
        return {k: to_hubspot(v) for k, v in w.fields.items()}

    @staticmethod
    def _place(out: list[Record | None], part: Sequence[tuple[int, Write]], resp: Any, coll: Collection) -> None:
        """Put batch results back at their writes' positions (HubSpot returns them in any order)."""
        errors = getattr(resp, "errors", None) or []
        if errors:
            detail = "; ".join(f"{e.message} {e.context or ''}".strip() for e in errors)
            raise PermanentError(f"batch write partly failed: {detail}", system=SYSTEM, obj=coll.name)
        by_trace = {str(o.object_write_trace_id): o for o in resp.results if o.object_write_trace_id is not None}
        by_id = {str(o.id): o for o in resp.results}
        for i, w in part:
            obj = by_trace.get(str(i)) or (by_id.get(str(w.id)) if w.id else None)
            if obj is None:
                raise PermanentError(f"HubSpot returned no result for write #{i}", system=SYSTEM, obj=coll.name)
            out[i] = _record(obj)

    def delete(self, coll: Collection, record_ids: Sequence[str]) -> None:
        api = self.client.crm.objects.batch_api
        for part in chunks([str(i) for i in record_ids], BATCH_MAX):
            body = BatchInputSimplePublicObjectId(inputs=[{"id": i} for i in part])
            self._call(
                "batch archive",
                partial(api.archive, coll.name, body, _request_timeout=self.timeout),
                coll.name,
            )

    # -- schema, associations, webhooks (see connectors.hubspot_admin) ---------------------------
    def ensure_schema(self, coll: Collection, fields: Sequence[FieldSpec]) -> list[str]:
        return hubspot_admin.ensure_schema(self, coll.name, fields)

    def create_properties(self, object_type: str, fields: Sequence[FieldSpec]) -> list[str]:
        return hubspot_admin.create_properties(self, object_type, fields)

    def ensure_pipeline(
        self, object_type: str, label: str, stages: Sequence[str | hubspot_admin.Stage]
    ) -> hubspot_admin.Pipeline:
        return hubspot_admin.ensure_pipeline(self, object_type, label, stages)

    def associate(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        hubspot_admin.associate(self, from_type, from_id, to_type, to_id)

    def subscribe(self, app_id: int | str, target_url: str, event_types: Sequence[str]) -> list[str]:
        return hubspot_admin.subscribe(self, app_id, target_url, event_types)


def connect(settings: Settings, conn: redis.Redis) -> HubSpotConnector:
    """The connector the environment describes (HUBSPOT_ACCESS_TOKEN, HUBSPOT_HOST,
    HUBSPOT_DEVELOPER_API_KEY for webhook subscriptions)."""
    return HubSpotConnector(
        settings.require("HUBSPOT_ACCESS_TOKEN", "connectors.hubspot"),
        conn,
        host=settings.hubspot_host,
        developer_api_key=settings.get("HUBSPOT_DEVELOPER_API_KEY"),
        # Plans differ (190/10 s on Professional, more on Enterprise or with the API limit increase).
        rate=settings.number("HUBSPOT_RATE_LIMIT", 190),
        search_rate=settings.number("HUBSPOT_SEARCH_RATE_LIMIT", 4),
    )
