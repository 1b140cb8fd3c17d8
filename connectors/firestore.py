"""Firestore as a system of record, through firebase-admin (google-cloud-firestore underneath).

Choices that matter to callers:

- **Stamp field.** Every write sets ``stamp_field`` (default ``updated_at``) to the *server*
  timestamp, and ``changed_since`` filters on it. The server's clock is one clock for every
  worker (no skew between machines) and a pinned ``HUB_NOW`` in a dry run cannot make writes look
  older than they are. Documents written by other apps without the stamp are invisible to
  ``changed_since``; :meth:`FirestoreConnector.watch` sees them.
- **Retries are ours.** Every SDK call gets ``retry=NO_RETRY`` (the google client would otherwise
  retry UNAVAILABLE for up to 300 s on its own) and a ``timeout``, and runs through
  :func:`connectors.retry.call`. Writes are idempotent so a retried commit is safe: creates use a
  client-made auto id with ``set``, never ``create``.
- **Paging** is ``order_by`` + ``limit`` + ``start_after(last snapshot)``: memory stays at one page,
  and a page that fails transiently is fetched again from the same cursor.
- **Collections.** ``Collection.name`` is a collection path (``clients`` or
  ``clients/abc/bookings``); ``**/bookings`` reads the collection group ``bookings`` (read-only;
  its record ids are document paths). On real Firestore, ``where`` plus ``changed_since`` needs a
  composite index (equality fields + stamp field); the emulator needs none.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import firebase_admin
import redis
from firebase_admin import credentials as fb_credentials
from firebase_admin import firestore as fb_firestore
from google.auth.credentials import AnonymousCredentials
from google.cloud.firestore_v1 import DocumentReference, DocumentSnapshot, FieldFilter
from google.cloud.firestore_v1.base_query import BaseQuery

from connectors.base import Collection, FieldSpec, Record, Write, chunks
from connectors.firestore_errors import NO_RETRY, SYSTEM, classify
from connectors.firestore_watch import Change, WatchHandle, plain, start_watch
from connectors.governor import ConcurrencyGovernor, RateGovernor
from connectors.retry import RetryPolicy, call
from hub.errors import ConfigError, MissingSetting, PermanentError
from hub.settings import Settings

T = TypeVar("T")
log = logging.getLogger("hub.connectors.firestore")

MAX_BATCH_WRITES = 500  # Firestore's limit per commit (one Write per document, transforms included)
MAX_BATCH_BYTES = 9 * 1024 * 1024  # under the 10 MiB request limit, by a JSON estimate
MAX_GET_ALL = 100  # documents per BatchGetDocuments: keeps each response bounded
MAX_IN_VALUES = 30  # values in one "in" filter (identity matching)
GROUP_PREFIX = "**/"
_env_lock = threading.Lock()


def _estimate(fields: dict[str, Any]) -> int:
    return len(json.dumps(fields, default=str)) + 256


class FirestoreConnector:
    """The :class:`connectors.base.Connector` contract over firebase-admin."""

    system = SYSTEM

    def __init__(
        self,
        *,
        project: str,
        emulator_host: str | None = None,
        credentials_path: str | None = None,
        stamp_field: str | None = "updated_at",
        page_size: int = 300,
        timeout: float = 30.0,
        governor: RateGovernor | None = None,
        inflight: ConcurrencyGovernor | None = None,
        policy: RetryPolicy | None = None,
        conn: redis.Redis | None = None,
    ) -> None:
        if not project:
            raise ConfigError("a Firestore project id is required (GOOGLE_CLOUD_PROJECT)")
        if page_size < 1 or timeout <= 0:
            raise ValueError(f"page_size must be ≥ 1 and timeout > 0, got {page_size!r}, {timeout!r}")
        if emulator_host is None and not credentials_path:
            raise MissingSetting("GOOGLE_APPLICATION_CREDENTIALS", "the Firestore connector (real project)")
        self.project = project
        self.emulator_host = emulator_host
        self.stamp_field = stamp_field
        self.page_size = page_size
        self.timeout = timeout
        self.governor = governor
        self.inflight = inflight
        self.policy = policy
        self.conn = conn
        self.counts: Counter[str] = Counter()  # commits, writes, pages, queries, gets, batch_gets
        cred: Any = AnonymousCredentials() if emulator_host is not None else _certificate(credentials_path)
        self._app = firebase_admin.initialize_app(
            cred, options={"projectId": project}, name=f"hub-firestore-{uuid.uuid4().hex}"
        )
        with self._emulator_env():
            self.client = fb_firestore.client(self._app)

    @contextmanager
    def _emulator_env(self) -> Iterator[None]:
        """The google client reads FIRESTORE_EMULATOR_HOST once, when built: make it say ours."""
        name = "FIRESTORE_EMULATOR_HOST"
        with _env_lock:
            before = os.environ.get(name)
            if self.emulator_host is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = self.emulator_host
            try:
                yield
            finally:
                if before is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = before

    def close(self) -> None:
        """Release the gRPC channel and the firebase app."""
        self.client.close()
        firebase_admin.delete_app(self._app)

    # -- plumbing ------------------------------------------------------------------------------
    def _call(self, fn: Callable[[], T], what: str, coll: Collection | str, field: str = "") -> T:
        obj = str(coll)
        return call(fn, classify=lambda exc: classify(exc, obj=obj, field=field), what=f"{SYSTEM} {what} {obj}",
                    governor=self.governor, inflight=self.inflight, policy=self.policy)

    @staticmethod
    def _group(coll: Collection) -> str | None:
        return coll.name[len(GROUP_PREFIX):] if coll.name.startswith(GROUP_PREFIX) else None

    def _collection(self, coll: Collection) -> Any:
        name = coll.name.strip("/")
        group = self._group(coll)
        if group is not None:
            if not group or "/" in group:
                raise ConfigError(f"Firestore collection group must be '**/<id>', got {coll.name!r}")
            return self.client.collection_group(group)
        parts = name.split("/")
        if not name or any(not p for p in parts) or len(parts) % 2 == 0:
            raise ConfigError(f"not a Firestore collection path (odd number of segments): {coll.name!r}")
        return self.client.collection(name)

    def _writable(self, coll: Collection) -> Any:
        if self._group(coll) is not None:
            raise ConfigError(f"collection group {coll.name!r} is read-only; write to a collection path")
        return self._collection(coll)

    def _ref(self, coll: Collection, record_id: str) -> DocumentReference:
        if self._group(coll) is not None:  # ids of a group read are document paths
            parts = str(record_id).strip("/").split("/")
            if len(parts) % 2 or not all(parts):
                raise PermanentError(f"not a document path: {record_id!r}", system=SYSTEM, obj=str(coll),
                                     field="id")
            return self.client.document(*parts)
        if not isinstance(record_id, str) or not record_id or "/" in record_id or record_id in (".", ".."):
            raise PermanentError(f"not a Firestore document id: {record_id!r}", system=SYSTEM, obj=str(coll),
                                 field="id")
        return self._collection(coll).document(record_id)

    def _record(self, coll: Collection, snap: DocumentSnapshot) -> Record:
        record_id = snap.reference.path if self._group(coll) is not None else snap.id
        return Record(id=record_id, fields=plain(snap.to_dict() or {}),
                      created_at=plain(snap.create_time), updated_at=plain(snap.update_time))

    # -- reads ---------------------------------------------------------------------------------
    def get(self, coll: Collection, record_id: str) -> Record | None:
        ref = self._ref(coll, record_id)
        snap = self._call(lambda: ref.get(retry=NO_RETRY, timeout=self.timeout), "get", coll)
        self.counts["gets"] += 1
        return self._record(coll, snap) if snap.exists else None

    def get_many(self, coll: Collection, record_ids: Sequence[str]) -> list[Record]:
        """Records in the order asked (duplicates once); BatchGetDocuments answers in any order."""
        wanted = list(dict.fromkeys(record_ids))
        found: dict[str, Record] = {}
        for part in chunks(wanted, MAX_GET_ALL):
            refs = [self._ref(coll, rid) for rid in part]
            snaps = self._call(
                lambda refs=refs: list(self.client.get_all(refs, retry=NO_RETRY, timeout=self.timeout)),
                "get_all", coll,
            )
            self.counts["batch_gets"] += 1
            for snap in snaps:
                if snap.exists:
                    rec = self._record(coll, snap)
                    found[rec.id] = rec
        return [found[rid] for rid in wanted if rid in found]

    def find(self, coll: Collection, field_name: str, value: Any) -> list[Record]:
        return list(self.iterate(coll, where={field_name: value}))

    def _query(self, coll: Collection, where: dict[str, Any] | None, changed_since: datetime | None) -> BaseQuery:
        query = self._collection(coll)
        for name, value in (where or {}).items():
            query = query.where(filter=FieldFilter(name, "==", value))
        if changed_since is not None:
            if not self.stamp_field:
                raise ConfigError("changed_since needs a stamp field; this connector has stamp_field=None")
            if changed_since.tzinfo is None:
                raise ValueError(f"changed_since must be timezone-aware, got {changed_since!r}")
            query = query.where(filter=FieldFilter(self.stamp_field, ">", changed_since))
            return query.order_by(self.stamp_field).order_by("__name__")
        return query.order_by("__name__")

    def iterate(
        self,
        coll: Collection,
        *,
        where: dict[str, Any] | None = None,
        changed_since: datetime | None = None,
        page_size: int | None = None,
    ) -> Iterator[Record]:
        """Page by page; a page that fails transiently is retried from the same cursor."""
        size = page_size or self.page_size
        if size < 1:
            raise ValueError(f"page_size must be ≥ 1, got {size!r}")
        base = self._query(coll, where, changed_since)
        field = (self.stamp_field or "") if changed_since is not None else ",".join(where or {})
        cursor: DocumentSnapshot | None = None
        while True:
            query = base.limit(size) if cursor is None else base.start_after(cursor).limit(size)
            page = self._call(lambda q=query: list(q.get(retry=NO_RETRY, timeout=self.timeout)),
                              "query", coll, field)
            self.counts["pages"] += 1
            for snap in page:
                yield self._record(coll, snap)
            if len(page) < size:
                return
            cursor = page[-1]

    # -- writes --------------------------------------------------------------------------------
    def _stamped(self, fields: dict[str, Any]) -> dict[str, Any]:
        data = dict(fields)
        if self.stamp_field:
            data[self.stamp_field] = fb_firestore.SERVER_TIMESTAMP
        return data

    def _match_ids(self, coll: Collection, field: str, values: list[Any]) -> dict[Any, str]:
        """Existing document id for each value of ``field`` (the lowest id when several match)."""
        found: dict[Any, str] = {}
        base = self._collection(coll)
        for part in chunks(values, MAX_IN_VALUES):
            query = base.where(filter=FieldFilter(field, "in", list(part)))
            snaps = self._call(lambda q=query: list(q.get(retry=NO_RETRY, timeout=self.timeout)),
                               "match", coll, field)
            self.counts["queries"] += 1
            for snap in sorted(snaps, key=lambda s: s.id):
                found.setdefault(snap.get(field), snap.id)
        return found

    def _resolve(self, coll: Collection, writes: Sequence[Write]) -> list[tuple[DocumentReference, bool]]:
        """Each write's target document and whether the hub is creating it."""
        target = self._writable(coll)
        wanted: dict[str, list[Any]] = {}
        for w in writes:
            if w.id is None and w.match is not None:
                value = w.fields.get(w.match)
                if value is None or isinstance(value, dict | list):
                    raise PermanentError(f"match value must be a non-empty scalar, got {value!r}",
                                         system=SYSTEM, obj=str(coll), field=w.match)
                wanted.setdefault(w.match, [])
                if value not in wanted[w.match]:
                    wanted[w.match].append(value)
        matched = {f: self._match_ids(coll, f, vals) for f, vals in wanted.items()}
        plan: list[tuple[DocumentReference, bool]] = []
        for w in writes:
            if w.id is not None:
                plan.append((self._ref(coll, w.id), False))
            elif w.match is not None:
                known = matched[w.match]
                value = w.fields[w.match]
                if value in known:
                    plan.append((target.document(known[value]), False))
                else:
                    # A new document named after the value: two workers creating the same record
                    # at once (both found no match) write one document, not two. Later writes with
                    # the same value in this call land on it too.
                    ref = target.document(match_doc_id(w.match, value))
                    known[value] = ref.id
                    plan.append((ref, True))
            else:
                plan.append((target.document(), True))
        return plan

    def _batches(self, items: Sequence[Any], size_of: Callable[[Any], int]) -> Iterator[list[Any]]:
        batch: list[Any] = []
        total = 0
        for item in items:
            size = size_of(item)
            if batch and (len(batch) >= MAX_BATCH_WRITES or total + size > MAX_BATCH_BYTES):
                yield batch
                batch, total = [], 0
            batch.append(item)
            total += size
        if batch:
            yield batch

    def _commit(self, coll: Collection, fill: Callable[[Any], None]) -> list[Any]:
        def attempt() -> list[Any]:
            batch = self.client.batch()  # a fresh batch per attempt: the writes are idempotent
            fill(batch)
            return list(batch.commit(retry=NO_RETRY, timeout=self.timeout))

        results = self._call(attempt, "commit", coll)
        self.counts["commits"] += 1
        self.counts["writes"] += len(results)
        return results

    def upsert_many(self, coll: Collection, writes: Sequence[Write]) -> list[Record]:
        """``id`` → merge into that document (created if missing); ``match`` → merge into the
        document whose field equals the value, else create; neither → create with an auto id.

        Returned records carry the fields written (with the stamp's server value), not the whole
        merged document: read it back with :meth:`get_many` when needed.
        """
        plan = self._resolve(coll, writes)
        items = list(zip(writes, plan, strict=True))
        out: list[Record] = []
        for batch in self._batches(items, lambda item: _estimate(item[0].fields)):

            def fill(wb: Any, batch: list[Any] = batch) -> None:
                for w, (ref, created) in batch:
                    # Merged unless the id is a fresh random one: a document named after its match
                    # value may have been created by a concurrent write an instant ago.
                    wb.set(ref, self._stamped(w.fields), merge=not created or w.match is not None)

            for (w, (ref, created)), result in zip(batch, self._commit(coll, fill), strict=True):
                fields = plain(dict(w.fields))
                if self.stamp_field and result.transform_results:
                    fields[self.stamp_field] = plain(result.transform_results[0].timestamp_value)
                when = plain(result.update_time)
                out.append(Record(id=ref.id, fields=fields, created_at=when if created else None,
                                  updated_at=when))
        return out

    def delete(self, coll: Collection, record_ids: Sequence[str]) -> None:
        """Deletes in batches of 500; deleting a missing document is not an error."""
        refs = [self._ref(coll, rid) for rid in dict.fromkeys(record_ids)]
        if self._group(coll) is None:
            self._writable(coll)
        for part in chunks(refs, MAX_BATCH_WRITES):

            def fill(wb: Any, part: Sequence[DocumentReference] = part) -> None:
                for ref in part:
                    wb.delete(ref)

            self._commit(coll, fill)

    def ensure_schema(self, coll: Collection, fields: Sequence[FieldSpec]) -> list[str]:
        """Nothing to create: Firestore is schemaless (a field exists once a document has it)."""
        self._collection(coll)
        return []

    # -- listening -----------------------------------------------------------------------------
    def watch(
        self, coll: Collection, callback: Callable[[list[Change]], None], *, resume_token: str | None = None
    ) -> WatchHandle:
        """Call ``callback(changes)`` for every snapshot of ``coll`` (see :func:`start_watch`)."""
        group = self._group(coll) is not None
        return start_watch(
            self._collection(coll),
            callback,
            id_of=(lambda snap: snap.reference.path) if group else (lambda snap: snap.id),
            resume_token=resume_token,
            label=str(coll),
        )


def match_doc_id(field: str, value: Any) -> str:
    """The id of a document the hub creates for ``field == value`` (a digest: values are personal)."""
    return "hub-" + hashlib.sha256(f"{field}\x1f{value}".encode()).hexdigest()[:24]


def connect(settings: Settings, conn: redis.Redis | None = None, **options: Any) -> FirestoreConnector:
    """A connector from the environment: the emulator when FIRESTORE_EMULATOR_HOST is set (any
    ``demo-`` project, no credentials), else a real project with a service-account key file."""
    emulator = settings.get("FIRESTORE_EMULATOR_HOST")
    if emulator:
        project = settings.get("GOOGLE_CLOUD_PROJECT", "demo-hub") or "demo-hub"
        return FirestoreConnector(project=project, emulator_host=emulator, conn=conn, **options)
    key = settings.require("GOOGLE_APPLICATION_CREDENTIALS", "the Firestore connector (real project)")
    project = settings.get("GOOGLE_CLOUD_PROJECT") or _key_project(key)
    return FirestoreConnector(project=project, credentials_path=key, conn=conn, **options)


def _certificate(path: str | None) -> Any:
    try:
        return fb_credentials.Certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"GOOGLE_APPLICATION_CREDENTIALS={path!r} is not a service-account key: {exc}") from exc


def _key_project(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            project = json.load(fh).get("project_id")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"GOOGLE_APPLICATION_CREDENTIALS={path!r} is not a readable key file: {exc}") from exc
    if not project:
        raise MissingSetting("GOOGLE_CLOUD_PROJECT", "the Firestore connector (the key file names no project)")
    return str(project)


__all__ = ["NO_RETRY", "Change", "FirestoreConnector", "WatchHandle", "classify", "connect"]
