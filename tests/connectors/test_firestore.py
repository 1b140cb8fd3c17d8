"""The Firestore connector, over the wire against Google's emulator (and a faulty proxy)."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from google.api_core import exceptions as gexc

from connectors.base import Collection, Connector, FieldSpec, Write
from connectors.firestore import Change, FirestoreConnector, classify, connect
from connectors.retry import RetryPolicy
from hub.errors import ConfigError, MissingSetting, PermanentError, RateLimited, TransientError
from hub.sandbox.firestore import FirestoreEmulator
from hub.sandbox.tcpproxy import TcpProxy
from hub.settings import Settings
from tests.support.firestore import FAST_RETRY, firestore, firestore_emulator  # noqa: F401  (fixtures)
from tests.support.procs import free_port

CLIENTS = Collection("clients")


def other_client(fs: FirestoreConnector) -> FirestoreConnector:
    """A second, independent client on the same emulator and project."""
    return FirestoreConnector(project=fs.project, emulator_host=fs.emulator_host)


@pytest.fixture
def proxied(firestore: FirestoreConnector) -> Iterator[tuple[FirestoreConnector, TcpProxy]]:  # noqa: F811
    """A connector whose traffic goes through a fault-injecting TCP proxy."""
    assert firestore.emulator_host is not None
    with TcpProxy(firestore.emulator_host) as proxy:
        fs = FirestoreConnector(project=firestore.project, emulator_host=proxy.host_port, policy=FAST_RETRY)
        try:
            yield fs, proxy
        finally:
            fs.close()


# -- contract and CRUD --------------------------------------------------------------------------------
def test_is_a_connector(firestore: FirestoreConnector) -> None:  # noqa: F811
    assert isinstance(firestore, Connector)
    assert firestore.system == "firestore"
    assert firestore.ensure_schema(CLIENTS, [FieldSpec("email", "email")]) == []


def test_create_get_update_delete(firestore: FirestoreConnector) -> None:  # noqa: F811
    [created] = firestore.upsert_many(CLIENTS, [Write({"email": "ana@example.com", "visits": 1})])
    assert created.id and created.created_at is not None
    stamp = created.fields["updated_at"]
    assert isinstance(stamp, datetime) and stamp.tzinfo == UTC

    got = firestore.get(CLIENTS, created.id)
    assert got is not None
    assert got.fields == {"email": "ana@example.com", "visits": 1, "updated_at": stamp}
    assert got.created_at is not None and got.created_at.tzinfo == UTC
    assert got.updated_at is not None and got.updated_at.tzinfo == UTC

    [updated] = firestore.upsert_many(CLIENTS, [Write({"visits": 2}, id=created.id)])
    assert updated.id == created.id and updated.created_at is None
    again = firestore.get(CLIENTS, created.id)
    assert again is not None and again.fields["email"] == "ana@example.com"  # merged, not replaced
    assert again.fields["visits"] == 2
    assert again.fields["updated_at"] > stamp
    assert again.updated_at is not None and got.updated_at < again.updated_at

    firestore.delete(CLIENTS, [created.id])
    assert firestore.get(CLIENTS, created.id) is None
    firestore.delete(CLIENTS, [created.id])  # deleting a missing document is fine


def test_write_by_id_creates_missing_document(firestore: FirestoreConnector) -> None:  # noqa: F811
    firestore.upsert_many(CLIENTS, [Write({"name": "Gergom Events"}, id="gergom")])
    record = firestore.get(CLIENTS, "gergom")
    assert record is not None and record.fields["name"] == "Gergom Events"


def test_timestamps_come_back_as_utc(firestore: FirestoreConnector) -> None:  # noqa: F811
    paris = timezone(timedelta(hours=2))
    when = datetime(2026, 1, 14, 9, 30, tzinfo=paris)
    firestore.upsert_many(CLIENTS, [Write({"last_booking": when, "nested": {"at": [when]}}, id="t")])
    record = firestore.get(CLIENTS, "t")
    assert record is not None
    value = record.fields["last_booking"]
    assert value == when and value.tzinfo == UTC and value.hour == 7
    assert record.fields["nested"]["at"][0] == when
    assert type(value) is datetime  # plain datetimes (JSON-able by the hub), not the SDK's subclass


def test_get_many_keeps_order_and_skips_missing(firestore: FirestoreConnector) -> None:  # noqa: F811
    writes = [Write({"n": i}, id=f"c{i:03d}") for i in range(150)]
    firestore.upsert_many(CLIENTS, writes)
    firestore.counts.clear()
    wanted = ["c149", "missing", "c000", "c077", "c000", *[f"c{i:03d}" for i in range(100, 140)]]
    records = firestore.get_many(CLIENTS, wanted)
    assert [r.id for r in records] == ["c149", "c000", "c077", *[f"c{i:03d}" for i in range(100, 140)]]
    assert records[0].fields["n"] == 149
    all_ids = [w.id for w in writes if w.id]
    firestore.counts.clear()
    assert len(firestore.get_many(CLIENTS, all_ids)) == 150
    assert firestore.counts["batch_gets"] == 2  # 100 per BatchGetDocuments


def test_bad_ids_and_paths_are_refused(firestore: FirestoreConnector) -> None:  # noqa: F811
    with pytest.raises(PermanentError, match="document id") as err:
        firestore.get(CLIENTS, "a/b")
    assert err.value.field == "id"
    with pytest.raises(ConfigError, match="odd number"):
        firestore.get(Collection("clients/abc"), "x")
    with pytest.raises(ConfigError, match="read-only"):
        firestore.upsert_many(Collection("**/bookings"), [Write({"a": 1})])


# -- identity matching ---------------------------------------------------------------------------------
def test_match_updates_the_existing_document_or_creates_one(firestore: FirestoreConnector) -> None:  # noqa: F811
    [ana] = firestore.upsert_many(CLIENTS, [Write({"email": "ana@example.com", "city": "Istres"})])
    results = firestore.upsert_many(
        CLIENTS,
        [
            Write({"email": "ana@example.com", "phone": "+33600000000"}, match="email"),
            Write({"email": "bob@example.com", "city": "Embrun"}, match="email"),
            Write({"email": "bob@example.com", "phone": "+33611111111"}, match="email"),
        ],
    )
    assert results[0].id == ana.id
    assert results[1].id == results[2].id != ana.id  # one new document for both bob writes
    assert results[1].created_at is not None and results[2].created_at is None  # created once, then merged
    ana_now = firestore.get(CLIENTS, ana.id)
    assert ana_now is not None and ana_now.fields["city"] == "Istres"
    assert ana_now.fields["phone"] == "+33600000000"
    [bob] = firestore.find(CLIENTS, "email", "bob@example.com")
    assert bob.fields["city"] == "Embrun" and bob.fields["phone"] == "+33611111111"


def test_two_clients_creating_the_same_record_at_once_make_one_document(firestore: FirestoreConnector) -> None:  # noqa: F811
    """Two workers propagate a new record at the same moment: both find no match, both create."""
    other = other_client(firestore)
    for n in range(3):
        email = f"race{n}@example.com"
        plans = [c._resolve(CLIENTS, [Write({"email": email}, match="email")]) for c in (firestore, other)]
        assert all(created for plan in plans for _, created in plan)  # neither saw the other's document
        assert plans[0][0][0].id == plans[1][0][0].id  # ...and both would create the same one
        firestore.upsert_many(CLIENTS, [Write({"email": email, "city": "Istres"}, match="email")])
        other.upsert_many(CLIENTS, [Write({"email": email, "phone": "+33600000000"}, match="email")])
        [doc] = firestore.find(CLIENTS, "email", email)
        assert doc.fields["city"] == "Istres" and doc.fields["phone"] == "+33600000000"
    other.close()


def test_match_queries_use_in_filters_of_30(firestore: FirestoreConnector) -> None:  # noqa: F811
    firestore.upsert_many(CLIENTS, [Write({"email": f"u{i}@example.com"}) for i in range(70)])
    firestore.counts.clear()
    writes = [Write({"email": f"u{i}@example.com", "seen": True}, match="email") for i in range(70)]
    results = firestore.upsert_many(CLIENTS, writes)
    assert firestore.counts["queries"] == 3  # 30 + 30 + 10 values
    assert all(r.created_at is None for r in results)  # all matched, none created
    assert len(list(firestore.iterate(CLIENTS))) == 70


def test_match_needs_a_value(firestore: FirestoreConnector) -> None:  # noqa: F811
    with pytest.raises(PermanentError) as err:
        firestore.upsert_many(CLIENTS, [Write({"name": "no email"}, match="email")])
    assert err.value.field == "email" and err.value.system == "firestore"


# -- paging, batching, filtering ------------------------------------------------------------------------
def test_iterate_pages_with_cursors(firestore: FirestoreConnector) -> None:  # noqa: F811
    firestore.upsert_many(CLIENTS, [Write({"n": i}, id=f"d{i:04d}") for i in range(250)])
    firestore.counts.clear()
    records = list(firestore.iterate(CLIENTS, page_size=100))
    assert [r.id for r in records] == [f"d{i:04d}" for i in range(250)]
    assert firestore.counts["pages"] == 3

    firestore.counts.clear()
    lazy = firestore.iterate(CLIENTS, page_size=100)
    first_ten = [next(lazy) for _ in range(10)]
    assert len(first_ten) == 10 and firestore.counts["pages"] == 1  # fetched as consumed


def test_1200_writes_take_three_commits_and_deletes_batch_too(firestore: FirestoreConnector) -> None:  # noqa: F811
    results = firestore.upsert_many(CLIENTS, [Write({"n": i}) for i in range(1200)])
    assert firestore.counts["commits"] == 3 and firestore.counts["writes"] == 1200
    assert len({r.id for r in results}) == 1200
    firestore.counts.clear()
    assert sum(1 for _ in firestore.iterate(CLIENTS, page_size=500)) == 1200
    assert firestore.counts["pages"] == 3

    firestore.counts.clear()
    firestore.delete(CLIENTS, [r.id for r in results])
    assert firestore.counts["commits"] == 3
    assert list(firestore.iterate(CLIENTS)) == []


def test_where_and_changed_since(firestore: FirestoreConnector) -> None:  # noqa: F811
    first = firestore.upsert_many(
        CLIENTS, [Write({"segment": "vip" if i % 3 == 0 else "active", "i": i}, id=f"a{i}") for i in range(9)]
    )
    mark = max(r.fields["updated_at"] for r in first)
    time.sleep(0.01)  # the emulator stamps with millisecond precision: the next commit is later
    firestore.upsert_many(CLIENTS, [Write({"segment": "vip"}, id="a1"), Write({"segment": "dormant"}, id="b1")])

    vip = sorted(r.id for r in firestore.iterate(CLIENTS, where={"segment": "vip"}))
    assert vip == ["a0", "a1", "a3", "a6"]
    changed = sorted(r.id for r in firestore.iterate(CLIENTS, changed_since=mark))
    assert changed == ["a1", "b1"]
    both = [r.id for r in firestore.iterate(CLIENTS, where={"segment": "vip"}, changed_since=mark, page_size=1)]
    assert both == ["a1"]
    assert [r.id for r in firestore.find(CLIENTS, "i", 4)] == ["a4"]
    with pytest.raises(ValueError, match="timezone"):
        list(firestore.iterate(CLIENTS, changed_since=datetime(2026, 1, 1)))


def test_collection_group_reads(firestore: FirestoreConnector) -> None:  # noqa: F811
    firestore.upsert_many(Collection("clients/rooftop/bookings"), [Write({"fee": 450}, id="b1")])
    firestore.upsert_many(Collection("clients/gergom/bookings"), [Write({"fee": 900}, id="b1")])
    group = Collection("**/bookings")
    records = sorted(firestore.iterate(group), key=lambda r: r.id)
    assert [r.id for r in records] == ["clients/gergom/bookings/b1", "clients/rooftop/bookings/b1"]
    record = firestore.get(group, "clients/rooftop/bookings/b1")
    assert record is not None and record.fields["fee"] == 450


# -- failures -------------------------------------------------------------------------------------------
def test_a_cut_connection_is_retried(proxied: tuple[FirestoreConnector, TcpProxy]) -> None:
    fs, proxy = proxied
    fs.upsert_many(CLIENTS, [Write({"n": 1}, id="x")])
    proxy.cut_next(1)
    record = fs.get(CLIENTS, "x")
    assert record is not None and record.fields["n"] == 1
    assert proxy.stats()["cuts"] == 1 and proxy.stats()["connections"] >= 2

    proxy.cut_next(1)
    fs.upsert_many(CLIENTS, [Write({"n": 2}, id="x")])  # a commit survives a cut too
    assert proxy.stats()["cuts"] == 2
    again = fs.get(CLIENTS, "x")
    assert again is not None and again.fields["n"] == 2


def test_iteration_resumes_after_a_cut_mid_way(proxied: tuple[FirestoreConnector, TcpProxy]) -> None:
    fs, proxy = proxied
    fs.upsert_many(CLIENTS, [Write({"n": i}, id=f"d{i:04d}") for i in range(250)])
    seen = []
    for record in fs.iterate(CLIENTS, page_size=100):
        seen.append(record.id)
        if len(seen) == 100:
            proxy.cut_next(1)  # the request for page 2 is cut
    assert seen == [f"d{i:04d}" for i in range(250)]
    assert proxy.stats()["cuts"] == 1


def test_without_retries_a_cut_is_a_transient_error(firestore: FirestoreConnector) -> None:  # noqa: F811
    assert firestore.emulator_host is not None
    with TcpProxy(firestore.emulator_host) as proxy:
        fs = FirestoreConnector(
            project=firestore.project, emulator_host=proxy.host_port, policy=RetryPolicy(attempts=1)
        )
        try:
            proxy.cut_next(1)
            with pytest.raises(TransientError, match="ServiceUnavailable"):
                fs.get(CLIENTS, "x")
        finally:
            fs.close()


def test_a_slow_link_hits_the_call_timeout(firestore: FirestoreConnector) -> None:  # noqa: F811
    assert firestore.emulator_host is not None
    with TcpProxy(firestore.emulator_host) as proxy:
        fs = FirestoreConnector(project=firestore.project, emulator_host=proxy.host_port, timeout=0.2,
                                policy=RetryPolicy(attempts=1))
        try:
            assert fs.get(CLIENTS, "x") is None  # connected while the link is fast
            proxy.update(latency_ms=1000)
            with pytest.raises(TransientError, match="DeadlineExceeded"):
                fs.get(CLIENTS, "x")
        finally:
            proxy.update(latency_ms=0)
            fs.close()


def test_unreachable_service_fails_after_our_bounded_retries(firestore: FirestoreConnector) -> None:  # noqa: F811
    sleeps: list[float] = []
    policy = RetryPolicy(attempts=3, base_delay=0.01, sleep=sleeps.append)
    fs = FirestoreConnector(project=firestore.project, emulator_host=f"127.0.0.1:{free_port()}", policy=policy)
    try:
        with pytest.raises(TransientError):
            fs.get(CLIENTS, "x")
    finally:
        fs.close()
    assert len(sleeps) == 2  # our 3 attempts; the google client's own retry is off


def test_server_refusals_are_permanent_and_name_the_field(firestore: FirestoreConnector) -> None:  # noqa: F811
    with pytest.raises(PermanentError) as err:
        firestore.upsert_many(CLIENTS, [Write({"__bad__": 1}, id="x")])
    assert err.value.system == "firestore" and err.value.obj == "clients"
    assert err.value.field == "__bad__" and err.value.status == 400
    with pytest.raises(PermanentError) as big:
        firestore.upsert_many(CLIENTS, [Write({"notes": "x" * 1_100_000}, id="y")])
    assert big.value.field == "notes"
    with pytest.raises(PermanentError, match="InvalidArgument"):
        firestore.get(CLIENTS, "__reserved__")


def test_classify_maps_google_errors() -> None:
    assert type(classify(gexc.ServiceUnavailable("down"), obj="c")) is TransientError
    assert type(classify(gexc.DeadlineExceeded("slow"))) is TransientError
    assert type(classify(gexc.Aborted("contention"))) is TransientError
    assert type(classify(gexc.InternalServerError("oops"))) is TransientError
    assert isinstance(classify(gexc.ResourceExhausted("quota")), RateLimited)
    for exc in (gexc.InvalidArgument("bad"), gexc.NotFound("gone"), gexc.PermissionDenied("no"),
                gexc.FailedPrecondition("index")):
        err = classify(exc, obj="clients", field="email")
        assert isinstance(err, PermanentError) and not isinstance(err, TransientError)
        assert (err.system, err.obj, err.field) == ("firestore", "clients", "email")
    assert classify(gexc.NotFound("gone")).status == 404  # type: ignore[attr-defined]


# -- configuration ----------------------------------------------------------------------------------------
def test_connect_reads_the_environment(firestore_emulator: FirestoreEmulator, tmp_path: Path) -> None:  # noqa: F811
    env = {"FIRESTORE_EMULATOR_HOST": firestore_emulator.host_port, "GOOGLE_CLOUD_PROJECT": "demo-connect"}
    fs = connect(Settings(env=env))
    try:
        assert fs.project == "demo-connect" and fs.emulator_host == firestore_emulator.host_port
        fs.upsert_many(CLIENTS, [Write({"ok": True}, id="x")])
        assert fs.get(CLIENTS, "x") is not None
    finally:
        fs.close()
        firestore_emulator.reset("demo-connect")
    with pytest.raises(MissingSetting, match="GOOGLE_APPLICATION_CREDENTIALS"):
        connect(Settings(env={"GOOGLE_CLOUD_PROJECT": "real-project"}))
    bad_key = tmp_path / "key.json"
    bad_key.write_text("not json")
    with pytest.raises(ConfigError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        connect(Settings(env={"GOOGLE_APPLICATION_CREDENTIALS": str(bad_key)}))
    with pytest.raises(ConfigError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        connect(Settings(env={"GOOGLE_APPLICATION_CREDENTIALS": str(bad_key), "GOOGLE_CLOUD_PROJECT": "real"}))


# -- watch ------------------------------------------------------------------------------------------------
def next_changes(box: queue.Queue[list[Change]], timeout: float = 15.0) -> list[Change]:
    return box.get(timeout=timeout)


def test_watch_sees_another_clients_changes(firestore: FirestoreConnector) -> None:  # noqa: F811
    box: queue.Queue[list[Change]] = queue.Queue()
    handle = firestore.watch(CLIENTS, box.put)
    writer = other_client(firestore)
    try:
        writer.upsert_many(CLIENTS, [Write({"email": "ana@example.com"}, id="ana")])
        [added] = next_changes(box)
        assert (added.type, added.id, added.data and added.data["email"]) == ("ADDED", "ana", "ana@example.com")
        assert added.update_time is not None and added.read_time is not None
        assert added.update_time.tzinfo == UTC

        writer.upsert_many(CLIENTS, [Write({"city": "Istres"}, id="ana")])
        [modified] = next_changes(box)
        assert modified.type == "MODIFIED" and modified.data and modified.data["city"] == "Istres"

        writer.delete(CLIENTS, ["ana"])
        [removed] = next_changes(box)
        assert (removed.type, removed.id) == ("REMOVED", "ana")
        assert handle.active and handle.resume_token
    finally:
        handle.close()
        writer.close()
    assert not handle.active


def test_watch_resumes_after_a_token(firestore: FirestoreConnector) -> None:  # noqa: F811
    box: queue.Queue[list[Change]] = queue.Queue()
    firestore.upsert_many(CLIENTS, [Write({"n": 1}, id="old"), Write({"n": 1}, id="edited")])
    handle = firestore.watch(CLIENTS, box.put)
    initial = next_changes(box)
    assert sorted((c.type, c.id) for c in initial) == [("ADDED", "edited"), ("ADDED", "old")]
    token = handle.resume_token
    handle.close()
    assert token is not None

    firestore.upsert_many(CLIENTS, [Write({"n": 2}, id="edited"), Write({"n": 1}, id="new")])
    resumed = firestore.watch(CLIENTS, box.put, resume_token=token)
    try:
        changes = next_changes(box)
        assert sorted((c.type, c.id) for c in changes) == [("ADDED", "new"), ("MODIFIED", "edited")]
    finally:
        resumed.close()
