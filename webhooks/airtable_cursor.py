"""Airtable webhook bookkeeping in Redis, and the cursor drain the fetch job runs.

Per webhook the hub keeps ``hub:airtable:webhook:<id>`` (a hash: MAC secret, base, table id,
notification URL, expiration, cursor), written by ``setup`` — Airtable shows the secret once.

A ping says only "webhook W has news". The drain lists W's payloads from the stored cursor and,
per page, enqueues ONE ``handle_events`` job and moves the cursor in the same transaction,
guarded by a compare-and-set (the cursor never moves backwards nor past a page another run
committed). A per-webhook lock keeps concurrent pings from listing the same payloads; a ping
that finds the lock taken raises a "pending" flag that the lock holder checks after releasing
it, so a payload written after the holder's last read is fetched by a later round, never lost.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from connectors.base import Collection
from hub import jobs
from hub.clock import parse_instant
from hub.config.loader import Config
from hub.errors import TransientError

log = logging.getLogger("hub.webhooks.airtable")

INDEX = "hub:airtable:webhooks"  # ids of every webhook the hub created
SCHEMA_TTL = 300  # base schemas change rarely; a new field shows up within 5 minutes (or at once, see Names)
LOCK_TTL = 300  # seconds; extended after each page, so only a dead fetch lets it lapse
PAGE = 50  # payloads per list request (Airtable's maximum)
MAX_PAGES = 100  # per round: 5,000 payloads, then the lock is released and taken again
MAX_ROUNDS = 10  # per job: past this a follow-up job carries on
BATCH_JOB = "hub.engine.intake.handle_events"
FETCH_JOB = "webhooks.airtable.fetch_payloads"
_RANK = {"updated": 0, "unknown": 1, "created": 2}


# -- the registry -------------------------------------------------------------------------------
def hook_key(webhook_id: str) -> str:
    return f"hub:airtable:webhook:{webhook_id}"


def _pending_key(webhook_id: str) -> str:
    return f"{hook_key(webhook_id)}:pending"


def _lock_key(webhook_id: str) -> str:
    return f"{hook_key(webhook_id)}:lock"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class Hook:
    id: str
    base: str
    table: str
    url: str
    expires: str  # ISO 8601, "" when the webhook does not expire
    cursor: int


def save_hook(
    conn: redis.Redis, webhook_id: str, *, base: str, table: str, url: str, secret: str, expires: str | None
) -> None:
    """Remember a webhook just created (its payloads start at cursor 1)."""
    fields: dict[Any, str | int] = {"base": base, "table": table, "url": url, "secret": secret,
                                    "expires": expires or "", "cursor": 1}  # fmt: skip
    with conn.pipeline(transaction=True) as pipe:
        pipe.hset(hook_key(webhook_id), mapping=fields)
        pipe.sadd(INDEX, webhook_id)
        pipe.execute()


def load_hook(conn: redis.Redis, webhook_id: str) -> Hook | None:
    raw = conn.hgetall(hook_key(webhook_id))
    if not raw:
        return None
    get = {_text(k): _text(v) for k, v in raw.items()}
    return Hook(webhook_id, get.get("base", ""), get.get("table", ""), get.get("url", ""), get.get("expires", ""),
                int(get.get("cursor") or 1))  # fmt: skip


def secret_of(conn: redis.Redis, webhook_id: str) -> tuple[str | None, str | None]:
    """(MAC secret, base id) of a webhook the hub created, or (None, None): one round trip."""
    secret, base = conn.hmget(hook_key(webhook_id), ["secret", "base"])
    return (_text(secret) if secret else None), (_text(base) if base else None)


def hook_ids(conn: redis.Redis) -> list[str]:
    return sorted(_text(m) for m in conn.smembers(INDEX))


def set_expiration(conn: redis.Redis, webhook_id: str, expires: str | None) -> None:
    if conn.exists(hook_key(webhook_id)):
        conn.hset(hook_key(webhook_id), "expires", expires or "")


def forget_hook(conn: redis.Redis, webhook_id: str) -> None:
    with conn.pipeline(transaction=True) as pipe:
        pipe.delete(hook_key(webhook_id), _pending_key(webhook_id), _lock_key(webhook_id))
        pipe.srem(INDEX, webhook_id)
        pipe.execute()


def stranded(conn: redis.Redis, webhook_id: str) -> bool:
    """A ping is pending but no fetch holds the lock (its worker died): a sweep re-enqueues it."""
    return bool(conn.exists(_pending_key(webhook_id))) and not conn.exists(_lock_key(webhook_id))


# -- the base schema (table and field ids → names) ----------------------------------------------
def base_schema(conn: redis.Redis, connector: Any, base: str, *, fresh: bool = False) -> dict[str, Any]:
    """``{table id: {"name", "fields": {field id: name}}}`` from the Meta API, cached in Redis."""
    key = f"hub:airtable:schema:{base}"
    if not fresh:
        cached = conn.get(key)
        if cached:
            return json.loads(cached)  # type: ignore[no-any-return]
    url = connector.api.base(base).urls.tables
    # Through the connector's call path: the base's shared quota, error classification, retries.
    tables = connector._call(Collection("schema", base), "schema", lambda: connector.api.get(url))["tables"]
    schema = {t["id"]: {"name": t["name"], "fields": {f["id"]: f["name"] for f in t.get("fields", [])}}
              for t in tables}  # fmt: skip
    conn.set(key, json.dumps(schema), ex=SCHEMA_TTL)
    return schema


def mapped_tables(cfg: Config, base: str | None = None) -> dict[str, list[str]]:
    """Per base, the tables the mappings name (by name or id), in mapping order."""
    out: dict[str, list[str]] = {}
    for mapping in cfg.mappings.values():
        target = mapping.systems.airtable
        if target is None or (base is not None and target.base != base):
            continue
        tables = out.setdefault(target.base, [])
        if target.table not in tables:
            tables.append(target.table)
    return out


class Names:
    """Resolves a payload's table and field ids for one base; re-reads the schema at most once
    per fetch when an id is unknown (a table or field created since the cache was filled)."""

    def __init__(self, conn: redis.Redis, connector: Any, cfg: Config, base: str) -> None:
        self.conn, self.connector, self.base = conn, connector, base
        self.mapped = set(mapped_tables(cfg, base).get(base, []))
        self._schema: dict[str, Any] | None = None
        self._fresh = False

    def _lookup(self, table_id: str) -> dict[str, Any] | None:
        if self._schema is None:
            self._schema = base_schema(self.conn, self.connector, self.base)
        table = self._schema.get(table_id)
        if table is None and not self._fresh:
            self._schema, self._fresh = base_schema(self.conn, self.connector, self.base, fresh=True), True
            table = self._schema.get(table_id)
        return table  # type: ignore[no-any-return]

    def table(self, table_id: str) -> str | None:
        """The collection name the mapping uses for this table, or None when it is not mapped."""
        if table_id in self.mapped:
            return table_id
        table = self._lookup(table_id)
        return table["name"] if table is not None and table["name"] in self.mapped else None

    def fields(self, table_id: str, field_ids: Iterable[str]) -> list[str] | None:
        """Field names, or None when one cannot be named (then the event carries no hint at all:
        a partial hint would hide a change from the worker)."""
        ids = set(field_ids)
        table = self._lookup(table_id) or {"fields": {}}
        if not ids <= set(table["fields"]) and not self._fresh:
            self._schema, self._fresh = base_schema(self.conn, self.connector, self.base, fresh=True), True
            table = self._schema.get(table_id) or {"fields": {}}
        if not ids <= set(table["fields"]):
            return None
        return sorted(table["fields"][i] for i in ids)


# -- payloads → source events -------------------------------------------------------------------
def _ms(stamp: Any) -> int:
    try:
        return int(parse_instant(stamp).timestamp() * 1000) if isinstance(stamp, str) else 0
    except ValueError:
        return 0


def _cells(entry: Any, part: str) -> set[str]:
    block = entry.get(part) if isinstance(entry, Mapping) else None
    cells = block.get("cellValuesByFieldId") if isinstance(block, Mapping) else None
    return set(cells) if isinstance(cells, Mapping) else set()


class _Folded:
    """Changes to one record across the payloads of a page, as one source event (in order)."""

    def __init__(self) -> None:
        self.events: dict[tuple[str, str], dict[str, Any]] = {}

    def add(self, base: str, coll: str, record_id: str, kind: str, at_ms: int, fields: list[str] | None) -> None:
        ev = self.events.get((coll, record_id))
        if ev is None:
            self.events[(coll, record_id)] = {"system": "airtable", "coll": coll, "base": base, "id": record_id,
                                              "kind": kind, "at_ms": at_ms, "fields": fields}  # fmt: skip
            return
        ev["at_ms"] = max(ev["at_ms"], at_ms)
        if kind == "deleted":  # deleted last wins, and its fields no longer matter
            ev["kind"], ev["fields"] = kind, []
            return
        if ev["kind"] == "deleted" or _RANK[kind] > _RANK[ev["kind"]]:
            ev["kind"] = kind  # created after a deletion is a restore
        ev["fields"] = None if ev["fields"] is None or fields is None else sorted({*ev["fields"], *fields})

    def out(self) -> list[dict[str, Any]]:
        return [{**ev, "fields": ev["fields"] or []} for ev in self.events.values()]


def to_events(base: str, payloads: list[dict[str, Any]], names: Names) -> tuple[list[dict[str, Any]], int]:
    """Source events from v0 payloads (one per record touched), and how many changes were about
    tables no mapping uses."""
    folded, skipped = _Folded(), 0
    for payload in payloads:
        if payload.get("error"):
            # INVALID_FILTERS / INVALID_HOOK: the webhook stopped (`hub webhooks setup` makes a new one).
            log.error("airtable base %s: the webhook sent an error payload (%s)", base, payload.get("code"))
            continue
        at_ms = _ms(payload.get("timestamp"))
        for table_id, delta in (payload.get("changedTablesById") or {}).items():
            created = delta.get("createdRecordsById") or {}
            changed = delta.get("changedRecordsById") or {}
            destroyed = delta.get("destroyedRecordIds") or []
            coll = names.table(table_id) if created or changed or destroyed else None
            if coll is None:
                skipped += len(created) + len(changed) + len(destroyed)
                continue
            for record_id in created:
                folded.add(base, coll, record_id, "created", at_ms, [])
            for record_id, entry in changed.items():
                hint = names.fields(table_id, _cells(entry, "current") | _cells(entry, "previous"))
                folded.add(base, coll, record_id, "updated", at_ms, hint)
            for record_id in destroyed:
                folded.add(base, coll, record_id, "deleted", at_ms, [])
    return folded.out(), skipped


# -- the cursor ---------------------------------------------------------------------------------
def commit(conn: redis.Redis, webhook_id: str, start: int, end: int, events: list[dict[str, Any]]) -> bool:
    """Enqueue ``events`` as one job and move the cursor ``start`` → ``end``, atomically, only if
    it still stands at ``start`` and would not go backwards. False: another run got there first."""
    if end < start:
        log.warning("airtable webhook %s: Airtable answered cursor %d after %d; kept %d", webhook_id, end, start, start)
        return False
    key = hook_key(webhook_id)
    for _ in range(5):  # a concurrent write to the hash (an expiration update) only retries
        with conn.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)
                stored = pipe.hget(key, "cursor")
                if stored is None or int(stored) != start:
                    return False
                if end == start and not events:
                    return True
                pipe.multi()
                if events:
                    jobs.enqueue(conn, BATCH_JOB, "airtable", events, queue_name=jobs.QUEUE_HIGH, pipeline=pipe)
                pipe.hset(key, "cursor", end)
                pipe.execute()
                return True
            except redis.WatchError:
                continue
    raise TransientError(f"airtable webhook {webhook_id}: the cursor stayed contended; retrying the fetch")


def _round(conn: redis.Redis, connector: Any, names: Names, hook: Hook, lock: Any, counts: Counter[str]) -> None:
    """List pages from the stored cursor until Airtable has nothing more (or the page bound)."""
    cursor = int(conn.hget(hook_key(hook.id), "cursor") or hook.cursor)
    for _ in range(MAX_PAGES):
        payloads, end, more = connector.list_payloads(hook.base, hook.id, cursor=cursor, limit=PAGE)
        counts["pages"] += 1
        events, skipped = to_events(hook.base, payloads, names)
        if not commit(conn, hook.id, cursor, end, events):
            counts["superseded"] += 1
            return
        counts["payloads"] += len(payloads)
        counts["events"] += len(events)
        counts["unmapped"] += skipped
        try:
            lock.extend(LOCK_TTL, replace_ttl=True)
        except redis.exceptions.LockError:  # lapsed: another fetch may be running; leave the rest to a round
            conn.set(_pending_key(hook.id), 1)
            return
        cursor = end
        if not more:
            return
    conn.set(_pending_key(hook.id), 1)  # more pages remain: take another round


def drain(conn: redis.Redis, connector: Any, cfg: Config, hook: Hook) -> dict[str, int]:
    """Fetch every payload past the stored cursor, unless a running fetch will (see module doc)."""
    counts: Counter[str] = Counter()
    pending = _pending_key(hook.id)
    conn.set(pending, 1)
    for _ in range(MAX_ROUNDS):
        lock = conn.lock(_lock_key(hook.id), timeout=LOCK_TTL, blocking=False)
        if not lock.acquire(blocking=False):
            counts["left_to_running_fetch"] += 1
            return dict(counts)
        try:  # on a failure the job's retry (or rq's re-run of an abandoned job) raises the flag again
            conn.delete(pending)  # a ping from now on raises it again
            _round(conn, connector, Names(conn, connector, cfg, hook.base), hook, lock, counts)
        finally:
            try:
                lock.release()
            except redis.exceptions.LockError:
                log.warning("airtable webhook %s: the fetch lock lapsed before the fetch ended", hook.id)
        if not conn.exists(pending):  # checked after releasing: a ping after this takes the lock itself
            return dict(counts)
    jobs.enqueue(conn, FETCH_JOB, hook.base, hook.id, queue_name=jobs.QUEUE_HIGH)
    counts["continued"] += 1
    return dict(counts)
