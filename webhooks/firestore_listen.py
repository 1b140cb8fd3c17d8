"""``hub listen``: watch every mapped Firestore collection (``on_snapshot``) and enqueue its changes.

Resuming without losing or replaying: Redis keeps, per collection, each document's last processed
update time (ids and times only, never data). A watch's first snapshot lists every document, so on
(re)start a document is emitted only if it is new or its update time moved; stored ids the watch
no longer reports are fetched once, and those gone are emitted as deleted. The state is written
after the job is queued, and every event's de-duplication key is its document version, so a crash
in between re-emits nothing twice. On the very first run, documents last written before the
listener started are the baseline (a backfill's business), not events.

A failed batch (Redis down, say) leaves the state untouched and restarts that collection's watch
after a backoff: the new first snapshot re-derives what was missed.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from connectors.base import Collection
from connectors.firestore_watch import Change, WatchHandle
from hub.runtime import Runtime
from webhooks import intake
from webhooks.firestore import mapped_collections, source_event

log = logging.getLogger("hub.webhooks.firestore")

STATE = "hub:fs:listen:{coll}"  # hash: document id → update time (epoch µs)
META = "hub:fs:listen:{coll}:meta"  # hash: first_us (first start, minus margin), read_us (last snapshot)
FIRST_RUN_MARGIN = 2.0  # s: clock skew allowance; documents written this close to the first start are emitted
MAX_JOB_EVENTS = 1000  # a first snapshot after a long outage is split into jobs of this size
CHUNK = 1000  # ids per HMGET
POLL = 0.2  # s between checks of the watches' health and the stop flag
SETTLE = 1.0  # s to let the first snapshot's callback finish before looking for deletions
MAX_BACKOFF = 60.0
CONFIG_EVERY = 5.0  # s between looks at the mapped collections (the config reloads itself)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

Accept = Callable[[str, Sequence[dict[str, Any]], Sequence[str]], Any]


def micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _US


def key_for(coll: str, doc_id: str, version_us: int, deleted: bool = False) -> str:
    """One key per document version (and per deletion of it), whichever path emits it."""
    return intake.dedupe_key("firestore", ["listen", coll, doc_id, "deleted" if deleted else "", version_us])


def acceptor(conn: redis.Redis) -> Accept:
    """``webhooks.intake``'s claim-and-enqueue, outside a request."""
    return lambda provider, events, keys: intake.accept_on(conn, provider, events, keys)


class CollectionWatch:
    """One collection's watch and its Redis bookkeeping; callbacks arrive on the SDK's thread."""

    def __init__(self, coll: str, connector: Any, conn: redis.Redis, accept: Accept, first_us: int) -> None:
        self.coll = coll
        self.connector = connector
        self.conn = conn
        self.accept = accept
        self.state = STATE.format(coll=coll)
        self.meta = META.format(coll=coll)
        conn.hsetnx(self.meta, "first_us", first_us)
        self.first_us = int(conn.hget(self.meta, "first_us") or first_us)
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.handle: WatchHandle | None = None
        self.failed = False
        self.reconciled = False
        self.accounted: set[str] = set()  # ids the current watch reported
        self.tombstones: dict[str, int] = {}  # ids found gone at start → the version declared deleted
        self.last_read: datetime | None = None
        self.backoff = 1.0
        self.retry_at = 0.0

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        with self.lock:
            self.failed, self.reconciled, self.last_read = False, False, None
            self.accounted, self.tombstones = set(), {}
        self.handle = self.connector.watch(Collection(self.coll), self.on_changes)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    @property
    def healthy(self) -> bool:
        return self.handle is not None and self.handle.active and not self.failed

    def fail(self, what: str) -> None:
        """Stop trusting this watch; the run loop restarts it after a backoff."""
        log.error("firestore listen: %s failed on %s; restarting its watch in %.0f s", what, self.coll, self.backoff,
                  exc_info=sys.exc_info()[0] is not None)  # fmt: skip
        self.failed = True
        self.retry_at = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, MAX_BACKOFF)

    # -- changes --------------------------------------------------------------------------------
    def on_changes(self, changes: list[Change]) -> None:
        with self.lock:
            if self.failed:
                return  # the restart re-derives this batch from its first snapshot
            try:
                self._apply(changes)
            except Exception:
                self.fail("a batch")

    def _stored(self, ids: Sequence[str]) -> list[int | None]:
        out: list[int | None] = []
        for start in range(0, len(ids), CHUNK):
            values = self.conn.hmget(self.state, list(ids[start : start + CHUNK]))
            out.extend(int(v) if v is not None else None for v in values)
        return out

    def _apply(self, changes: list[Change]) -> None:
        events: list[dict[str, Any]] = []
        keys: list[str] = []
        sets: dict[str, int] = {}
        gone: list[str] = []
        for ch, old in zip(changes, self._stored([c.id for c in changes]), strict=True):
            self.accounted.add(ch.id)
            moment = ch.update_time or ch.read_time or datetime.now(UTC)
            version = micros(moment)
            if ch.type == "REMOVED":
                seen_at = ch.read_time or datetime.now(UTC)
                events.append(source_event(self.coll, ch.id, "deleted", micros(seen_at) // 1000))
                keys.append(key_for(self.coll, ch.id, version, deleted=True))
                gone.append(ch.id)
                continue
            if old is not None and old >= version:
                continue  # unchanged since it was processed
            if old is None and self.tombstones.get(ch.id) == version:
                continue  # the version found gone at start, reported by a snapshot taken just before
            sets[ch.id] = version
            if old is None and version < self.first_us:
                self.counts["baseline"] += 1
                continue
            kind = "created" if old is None and ch.type == "ADDED" else "updated"
            events.append(source_event(self.coll, ch.id, kind, version // 1000))
            keys.append(key_for(self.coll, ch.id, version))
        self._commit(events, keys, sets, gone, changes[-1].read_time if changes else None)

    def _commit(self, events: list[dict[str, Any]], keys: list[str], sets: dict[str, int], gone: list[str],
                read_time: datetime | None) -> None:  # fmt: skip
        """Queue first, then record what was processed (a crash in between is caught by the keys)."""
        dupes = 0
        for start in range(0, len(events), MAX_JOB_EVENTS):
            end = start + MAX_JOB_EVENTS
            dupes += self.accept("firestore", events[start:end], keys[start:end]).duplicates
        self.counts["duplicates"] += dupes
        self.counts.update(ev["kind"] for ev in events)
        with self.conn.pipeline(transaction=True) as pipe:
            if sets:
                versions: dict[Any, Any] = dict(sets)
                pipe.hset(self.state, mapping=versions)
            if gone:
                pipe.hdel(self.state, *gone)
            if read_time is not None:
                pipe.hset(self.meta, "read_us", micros(read_time))
            pipe.execute()
        if read_time is not None:
            self.last_read = read_time
        if events:
            log.info("firestore listen: %s: %d change(s), %d already queued", self.coll, len(events), dupes)

    # -- deletions while nobody listened --------------------------------------------------------
    def first_snapshot_done(self, now: float, since: float) -> bool:
        """True once the first snapshot arrived and its callback had time to run (it ran, or the
        collection was empty: no callback comes then, hence the bounded settle time)."""
        token = self.handle.resume_token if self.handle is not None else None
        if token is None:
            return False
        with self.lock:
            done = self.last_read is not None and self.last_read >= datetime.fromisoformat(token)
        return done or now - since >= SETTLE

    def reconcile(self) -> None:
        """Emit as deleted the stored documents that no longer exist (deleted while down)."""
        with self.lock:
            if self.failed:
                return
            stored = [k.decode() if isinstance(k, bytes) else str(k) for k in self.conn.hkeys(self.state)]
            candidates = [c for c in stored if c not in self.accounted]
        present = {r.id for r in self.connector.get_many(Collection(self.coll), candidates)} if candidates else set()
        with self.lock:
            if self.failed:
                return
            missing = [c for c in candidates if c not in present and c not in self.accounted]
            events, keys, gone = [], [], []
            now_ms = micros(datetime.now(UTC)) // 1000
            for doc_id, old in zip(missing, self._stored(missing), strict=True):
                if old is None:
                    continue
                self.tombstones[doc_id] = old
                events.append(source_event(self.coll, doc_id, "deleted", now_ms))
                keys.append(key_for(self.coll, doc_id, old, deleted=True))
                gone.append(doc_id)
            self._commit(events, keys, {}, gone, None)
            self.reconciled = True
            self.backoff = 1.0
        log.info("firestore listen: %s ready (%d stored document(s) checked, %d deleted while down)",
                 self.coll, len(candidates), len(gone))  # fmt: skip


class Listener:
    """Watches the mapped collections until stopped; ``ready`` is set once every watch has caught up."""

    def __init__(self, rt: Runtime, *, first_run_margin: float = FIRST_RUN_MARGIN) -> None:
        self.rt = rt
        self.conn = rt.redis
        self.accept = acceptor(self.conn)
        self.margin = first_run_margin
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.watches: dict[str, CollectionWatch] = {}
        self._started: dict[str, float] = {}

    def counts(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for w in self.watches.values():
            total.update(w.counts)
        return total

    def _sync(self) -> None:
        """Follow the config: watch newly mapped collections, drop unmapped ones."""
        wanted = mapped_collections(self.rt)
        for coll in [c for c in self.watches if c not in wanted]:
            self.watches.pop(coll).close()
            log.info("firestore listen: %s no longer mapped, stopped watching it", coll)
        new = [c for c in wanted if c not in self.watches]
        if not new:
            return
        connector = self.rt.connector("firestore")
        first_us = micros(datetime.now(UTC)) - int(self.margin * 1_000_000)
        for coll in new:
            watch = self.watches[coll] = CollectionWatch(coll, connector, self.conn, self.accept, first_us)
            self._start(watch)
        log.info("firestore listen: watching %d collection(s)", len(self.watches))

    def _start(self, watch: CollectionWatch) -> None:
        try:
            watch.start()
        except Exception:
            watch.fail("starting the watch")
        self._started[watch.coll] = time.monotonic()

    def _tend(self, watch: CollectionWatch) -> None:
        now = time.monotonic()
        if watch.failed or (watch.handle is not None and not watch.handle.active):
            if not watch.failed:
                watch.fail("the watch stream")
            if now >= watch.retry_at:
                watch.close()
                self._start(watch)
            return
        if not watch.reconciled and watch.first_snapshot_done(now, self._started[watch.coll]):
            try:
                watch.reconcile()
            except Exception:
                watch.fail("looking for deletions")

    def run(self) -> Counter[str]:
        """Watch until :attr:`stop` is set; close every watch; return the counts."""
        checked, idle = 0.0, False
        try:
            while not self.stop.is_set():
                if time.monotonic() - checked >= CONFIG_EVERY:
                    checked = time.monotonic()
                    self._sync()
                    if not self.watches and not idle:
                        log.warning("firestore listen: no Firestore collection is mapped; idle")
                    idle = not self.watches
                for watch in list(self.watches.values()):
                    self._tend(watch)
                if all(w.reconciled and w.healthy for w in self.watches.values()):
                    self.ready.set()
                self.stop.wait(POLL)
        finally:
            for watch in self.watches.values():
                watch.close()
            counts = self.counts()
            log.info("firestore listen: stopped (%s)", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or
                     "no changes")  # fmt: skip
        return counts


def run(rt: Runtime, *, first_run_margin: float = FIRST_RUN_MARGIN) -> Counter[str]:
    """The ``hub listen`` process: run a :class:`Listener` until SIGTERM or SIGINT."""
    listener = Listener(rt, first_run_margin=first_run_margin)
    in_main = threading.current_thread() is threading.main_thread()
    previous: dict[signal.Signals, Any] = {}
    if in_main:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: listener.stop.set())
    try:
        return listener.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
