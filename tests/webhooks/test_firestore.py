"""Firestore into the hub: the signed relay endpoint, and the listener (``hub listen``) against
Google's Firestore emulator — documents created, updated and deleted by another client become
exactly one source event each, one job per snapshot batch; a restarted listener replays nothing and
picks up, exactly once, what changed while it was down (deletions included). Real Redis.

"Exactly one" is checked without timing: after the changes under test, a sentinel document is
written; a watch delivers a collection's snapshots in order, so once the sentinel's event is queued,
any event the earlier changes could cause is queued too.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from redis.exceptions import ConnectionError as RedisConnectionError

from connectors.firestore import FirestoreConnector, connect
from hub.runtime import Runtime
from hub.settings import Settings
from tests.support.firestore import firestore, firestore_emulator  # noqa: F401
from tests.support.procs import python_env, wait_for
from tests.webhooks.test_app import make_app, queued
from webhooks import standard
from webhooks.firestore import parse_changes
from webhooks.firestore_listen import META, Listener

RELAY_SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
CLIENT = """\
entity: client
identity: [email]
fields:
  email: {type: email, required: true}
systems:
  firestore:
    collection: clients
    fields: {email: email}
"""
BOOKING = """\
entity: booking
identity: [ref]
fields:
  ref: {type: string, required: true}
systems:
  firestore:
    collection: bookings
    fields: {ref: ref}
"""
VISIT = """\
entity: visit
identity: [ref]
fields:
  ref: {type: string, required: true}
systems:
  firestore:
    collection: "**/visits"
    fields: {ref: ref}
"""


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    root = tmp_path / "config"
    (root / "mappings").mkdir(parents=True)
    for name, text in (("client", CLIENT), ("booking", BOOKING), ("visit", VISIT)):
        (root / "mappings" / f"{name}.yaml").write_text(text)
    return root


def firestore_events(conn: redis.Redis) -> list[dict[str, Any]]:
    return [ev for provider, events in queued(conn) if provider == "firestore" for ev in events]


def summary(events: Sequence[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return sorted((ev["coll"], ev["id"], ev["kind"]) for ev in events)


# -- the relay ----------------------------------------------------------------------------------
@pytest.fixture
def client(redis_url: str, redis_conn: redis.Redis, config_dir: Path) -> FlaskClient:
    return make_app(redis_url, config_dir, redis_conn, FIRESTORE_RELAY_SECRET=RELAY_SECRET).test_client()


def relay(
    client: FlaskClient, payload: Any, *, msg_id: str = "msg_1", secret: str = RELAY_SECRET, ts: int | None = None
) -> Any:
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **standard.headers_for(secret, msg_id, body, ts)}
    return client.post("/webhooks/firestore", data=body, headers=headers)


def test_a_relayed_change_becomes_a_source_event(client: FlaskClient, redis_conn: redis.Redis) -> None:
    resp = relay(client, {"collection": "clients", "id": "c1", "kind": "created", "at": "2025-01-02T03:04:05.5Z"})
    assert resp.status_code == 200, resp.get_json()
    [(provider, [event])] = queued(redis_conn)
    at_ms = int(datetime(2025, 1, 2, 3, 4, 5, 500000, tzinfo=UTC).timestamp() * 1000)
    expected = {"system": "firestore", "coll": "clients", "base": "", "id": "c1", "kind": "created", "fields": []}
    assert provider == "firestore" and event == {**expected, "at_ms": at_ms}


def test_a_list_is_one_job_and_subcollections_resolve_to_their_group(
    client: FlaskClient, redis_conn: redis.Redis
) -> None:
    changes = [
        {"collection": "clients", "id": "c1", "kind": "updated", "at": "2025-01-02T03:04:05Z", "fields": ["email"]},
        {"collection": "clients/c1/visits", "id": "v1", "kind": "created", "at": "2025-01-02T03:04:06Z"},
        {"collection": "/bookings/", "id": "b1", "kind": "deleted"},
        {"collection": "invoices", "id": "i1", "kind": "created"},  # not mapped: acknowledged, ignored
    ]
    ts = int(time.time())
    resp = relay(client, changes, ts=ts)
    assert resp.status_code == 200 and resp.get_json()["received"] == 3
    [(_, events)] = queued(redis_conn)
    assert summary(events) == [
        ("**/visits", "clients/c1/visits/v1", "created"),
        ("bookings", "b1", "deleted"),
        ("clients", "c1", "updated"),
    ]
    by_id = {ev["id"]: ev for ev in events}
    assert by_id["c1"]["fields"] == ["email"]
    assert by_id["b1"]["at_ms"] == ts * 1000  # no "at": the delivery's time


def test_changes_of_one_document_in_one_delivery_fold_into_one_event() -> None:
    changes = [
        {"collection": "clients", "id": "c1", "kind": "deleted", "at": "2025-01-02T03:00:03Z"},
        {"collection": "clients", "id": "c1", "kind": "created", "at": "2025-01-02T03:00:01Z"},
        {"collection": "clients", "id": "c1", "kind": "updated", "at": "2025-01-02T03:00:02Z"},
        {"collection": "clients", "id": "c2", "kind": "updated", "at": "2025-01-02T03:00:01Z"},
        {"collection": "clients", "id": "c2", "kind": "created", "at": "2025-01-02T03:00:00Z"},
    ]
    events, ignored = parse_changes(changes, 0, ["clients"])
    assert ignored == 0
    assert summary(events) == [("clients", "c1", "deleted"), ("clients", "c2", "created")]


def test_relay_retries_are_queued_once(client: FlaskClient, redis_conn: redis.Redis) -> None:
    change = {"collection": "clients", "id": "c1", "kind": "updated", "at": "2025-01-02T03:04:05Z"}
    first = relay(client, change, msg_id="msg_a")
    retry = relay(client, change, msg_id="msg_a", ts=int(time.time()) + 1)
    other = relay(client, [change, {**change, "id": "c2"}], msg_id="msg_b")
    assert [r.get_json()["duplicates"] for r in (first, retry, other)] == [0, 1, 0]
    assert summary(firestore_events(redis_conn)) == [
        ("clients", "c1", "updated"),
        ("clients", "c1", "updated"),
        ("clients", "c2", "updated"),
    ]


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ([], "expected 1 to 500 changes"),
        ({"collection": "clients", "id": "c1", "kind": "renamed"}, "'kind' must be one of"),
        ({"collection": "", "id": "c1", "kind": "created"}, "'collection' must be a non-empty string"),
        ({"collection": "clients", "id": "clients/c1", "kind": "created"}, "not a path"),
        ({"collection": "clients", "id": "c1", "kind": "created", "at": "yesterday"}, "not an ISO 8601 time"),
        ({"collection": "clients", "id": "c1", "kind": "created", "at": "2025-01-02T03:04:05"}, "needs a timezone"),
        ({"collection": "clients", "id": "c1", "kind": "created", "fields": "email"}, "'fields' must be a list"),
        ([{"collection": "clients", "id": "c1", "kind": "created"}, 7], "change 1: expected an object"),
    ],
)
def test_malformed_relay_bodies_are_400(client: FlaskClient, redis_conn: redis.Redis, payload: Any, words: str) -> None:
    resp = relay(client, payload)
    assert resp.status_code == 400 and words in resp.get_json()["error"], resp.get_json()
    assert queued(redis_conn) == []


def test_bad_relay_signatures_are_401(client: FlaskClient, redis_conn: redis.Redis) -> None:
    change = {"collection": "clients", "id": "c1", "kind": "created"}
    other = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    assert relay(client, change, secret=other).status_code == 401
    assert relay(client, change, ts=int(time.time()) - 600).status_code == 401
    body = json.dumps(change).encode()
    headers = {"Content-Type": "application/json", **standard.headers_for(RELAY_SECRET, "m", body)}
    tampered = body.replace(b"c1", b"c9")
    assert client.post("/webhooks/firestore", data=tampered, headers=headers).status_code == 401
    del headers["webhook-signature"]
    assert client.post("/webhooks/firestore", data=body, headers=headers).status_code == 401
    assert queued(redis_conn) == [] and list(redis_conn.scan_iter("hub:seen:*")) == []


@pytest.mark.parametrize("bad", [None, "${FIRESTORE_RELAY_SECRET}", "whsec_not base64!", "whsec_c2hvcnQ="])
def test_a_missing_or_unusable_relay_secret_is_503_not_401(
    redis_url: str, redis_conn: redis.Redis, config_dir: Path, bad: str | None
) -> None:
    env = {} if bad is None else {"FIRESTORE_RELAY_SECRET": bad}
    resp = relay(
        make_app(redis_url, config_dir, redis_conn, **env).test_client(),
        {"collection": "clients", "id": "c1", "kind": "created"},
    )
    assert resp.status_code == 503 and "not configured" in resp.get_json()["error"]
    assert bad is None or bad not in resp.get_data(as_text=True)
    assert queued(redis_conn) == []


# -- the listener -------------------------------------------------------------------------------
def listener_settings(redis_url: str, fs: FirestoreConnector, config_dir: Path) -> dict[str, str]:
    assert fs.emulator_host is not None
    return {
        "REDIS_URL": redis_url,
        "FIRESTORE_EMULATOR_HOST": fs.emulator_host,
        "GOOGLE_CLOUD_PROJECT": fs.project,
        "HUB_CONFIG": str(config_dir),
    }


@pytest.fixture
def runtime(
    redis_url: str,
    redis_conn: redis.Redis,
    firestore: FirestoreConnector,  # noqa: F811
    config_dir: Path,
) -> Iterator[Runtime]:
    settings = Settings(env=listener_settings(redis_url, firestore, config_dir))
    rt = Runtime(settings, config_dir=config_dir, conn=redis_conn)
    own = connect(settings, redis_conn)  # the listener's own client, apart from the writer's
    rt.use_connector("firestore", own)
    yield rt
    own.close()


@contextmanager
def listening(rt: Runtime, *, margin: float = 2.0, wrap: Callable[[Any], Any] | None = None) -> Iterator[Listener]:
    """A listener running in a thread until the block ends; entered once every watch caught up."""
    listener = Listener(rt, first_run_margin=margin)
    if wrap is not None:
        listener.accept = wrap(listener.accept)
    thread = threading.Thread(target=listener.run, name="listener", daemon=True)
    thread.start()
    try:
        wait_for(listener.ready.is_set, timeout=60, what="the listener to catch up")
        yield listener
    finally:
        listener.stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the listener did not stop"


class Writer:
    """Another Firestore client changing documents, and the sentinel that proves the queue settled."""

    def __init__(self, fs: FirestoreConnector, conn: redis.Redis) -> None:
        self.db = fs.client
        self.conn = conn
        self.sentinels = 0

    def set(self, coll: str, doc_id: str, **data: Any) -> None:
        self.db.collection(coll).document(doc_id).set(data)

    def delete(self, coll: str, doc_id: str) -> None:
        self.db.collection(coll).document(doc_id).delete()

    def seen(self, coll: str, doc_id: str, count: int) -> None:
        """Wait until ``count`` events about the document are queued (changes made closer together
        may share a snapshot, and then one event, which is right but not what a test can count on)."""
        wait_for(
            lambda: sum(1 for ev in firestore_events(self.conn) if (ev["coll"], ev["id"]) == (coll, doc_id)) >= count,
            timeout=60,
            what=f"event {count} about {coll}/{doc_id}",
        )

    def settle(self, *colls: str) -> list[dict[str, Any]]:
        """Write a sentinel per collection, wait for its event; return the events, sentinels left out."""
        self.sentinels += 1
        name = f"sentinel-{self.sentinels}"
        for coll in colls:
            self.set(coll, name, n=self.sentinels)

        def arrived() -> bool:
            got = {(ev["coll"], ev["id"]) for ev in firestore_events(self.conn)}
            return all((coll, name) in got for coll in colls)

        wait_for(arrived, timeout=60, what=f"{name} in the queue")
        return [ev for ev in firestore_events(self.conn) if not ev["id"].startswith("sentinel-")]


def test_live_changes_become_exactly_one_event_each(
    runtime: Runtime,
    firestore: FirestoreConnector,  # noqa: F811
    redis_conn: redis.Redis,
) -> None:
    w = Writer(firestore, redis_conn)
    with listening(runtime):
        w.set("clients", "c1", email="a@example.com")
        w.seen("clients", "c1", 1)
        w.set("clients", "c1", email="b@example.com")
        w.set("clients", "c2", email="c@example.com")
        w.seen("clients", "c2", 1)
        w.delete("clients", "c2")
        w.set("bookings", "b1", ref="R1")
        w.set("clients/c1/visits", "v1", ref="V1")
        events = w.settle("clients", "bookings")
    assert summary(events) == [
        ("**/visits", "clients/c1/visits/v1", "created"),
        ("bookings", "b1", "created"),
        ("clients", "c1", "created"),
        ("clients", "c1", "updated"),
        ("clients", "c2", "created"),
        ("clients", "c2", "deleted"),
    ]
    for ev in events:
        assert ev["system"] == "firestore" and ev["base"] == "" and ev["at_ms"] > 1_600_000_000_000
    # Ids and update times only: no document data is kept in Redis.
    assert all(b"example.com" not in (redis_conn.dump(k) or b"") for k in redis_conn.scan_iter("hub:fs:*"))


def test_one_job_per_snapshot_batch(
    runtime: Runtime,
    firestore: FirestoreConnector,  # noqa: F811
    redis_conn: redis.Redis,
) -> None:
    w = Writer(firestore, redis_conn)
    with listening(runtime):
        batch = firestore.client.batch()
        for i in range(3):
            batch.set(firestore.client.collection("clients").document(f"c{i}"), {"email": f"{i}@example.com"})
        batch.commit()  # one commit: one snapshot
        w.settle("clients")
    jobs = [events for provider, events in queued(redis_conn) if provider == "firestore"]
    assert sorted(len(events) for events in jobs) == [1, 3]  # the batch, then the sentinel


def test_a_restart_replays_nothing_and_catches_up_exactly_once(
    runtime: Runtime,
    firestore: FirestoreConnector,  # noqa: F811
    redis_conn: redis.Redis,
) -> None:
    w = Writer(firestore, redis_conn)
    w.set("clients", "old", email="old@example.com")  # before the listener ever ran: the baseline
    with listening(runtime, margin=0.0):
        w.set("clients", "c1", email="1@example.com")
        w.set("clients", "c2", email="2@example.com")
        w.set("clients", "c3", email="3@example.com")
        w.set("bookings", "b1", ref="R1")
        first = w.settle("clients", "bookings")
    assert summary(first) == [
        ("bookings", "b1", "created"),
        ("clients", "c1", "created"),
        ("clients", "c2", "created"),
        ("clients", "c3", "created"),
    ]
    read_us = int(redis_conn.hget(META.format(coll="clients"), "read_us") or 0)
    assert read_us > 0

    # While nobody listens: a creation, an update, deletions (one empties a collection).
    w.set("clients", "c4", email="4@example.com")
    w.set("clients", "c2", email="2b@example.com")
    w.delete("clients", "c3")
    w.delete("bookings", "b1")
    w.delete("bookings", "sentinel-1")
    before = len(firestore_events(redis_conn))
    with listening(runtime):
        w.settle("clients")
    assert summary(firestore_events(redis_conn)[before:]) == [
        ("bookings", "b1", "deleted"),
        ("bookings", "sentinel-1", "deleted"),
        ("clients", "c2", "updated"),
        ("clients", "c3", "deleted"),
        ("clients", "c4", "created"),
        ("clients", "sentinel-2", "created"),
    ]

    # A third start with nothing changed in between emits nothing but its own sentinel.
    before = len(firestore_events(redis_conn))
    with listening(runtime):
        w.settle("clients")
    assert summary(firestore_events(redis_conn)[before:]) == [("clients", "sentinel-3", "created")]


def test_a_failed_batch_is_recovered_by_restarting_the_watch(
    runtime: Runtime,
    firestore: FirestoreConnector,  # noqa: F811
    redis_conn: redis.Redis,
) -> None:
    failures: list[int] = []

    def flaky(accept: Any) -> Any:
        def call(provider: str, events: Sequence[dict[str, Any]], keys: Sequence[str]) -> Any:
            if not failures and any(ev["id"] == "c1" for ev in events):
                failures.append(len(events))
                raise RedisConnectionError("redis went away")  # what accept raises when Redis is down
            return accept(provider, events, keys)

        return call

    w = Writer(firestore, redis_conn)
    with listening(runtime, wrap=flaky) as listener:
        w.set("clients", "c1", email="1@example.com")
        events = w.settle("clients")
        assert listener.watches["clients"].counts["created"] >= 1
    assert failures == [1]
    assert summary(events) == [("clients", "c1", "created")]


def test_hub_listen_runs_as_a_process_and_stops_on_sigterm(
    redis_url: str,
    redis_conn: redis.Redis,
    firestore: FirestoreConnector,  # noqa: F811
    config_dir: Path,
) -> None:
    env = python_env(**listener_settings(redis_url, firestore, config_dir))
    # As the Procfile runs it (`python -m hub.cli` would miss the commands other modules register).
    command = [sys.executable, "-c", "from hub.cli import main; main()", "listen"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True)
    reader.start()

    def ready() -> bool:
        assert proc.poll() is None, "hub listen exited:\n" + "".join(lines)
        return any("clients ready" in line for line in lines)

    try:
        # Written once the watch has caught up: the emulator, freshly started, can miss a write made
        # while a listen stream is being set up (seen with the bare SDK too).
        wait_for(ready, timeout=60, what="hub listen to catch up")
        Writer(firestore, redis_conn).set("clients", "c1", email="1@example.com")
        wait_for(
            lambda: summary(firestore_events(redis_conn)) == [("clients", "c1", "created")],
            timeout=60,
            what="the event from hub listen",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(timeout=10)
    log = "".join(lines)
    assert proc.returncode == 0, log
    assert "firestore listen: stopped (created 1" in log
    assert "1@example.com" not in log  # counts, never document data
