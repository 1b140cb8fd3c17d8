"""Airtable intake: MAC-signed pings (vectors by Airtable's formula), the cursor fetch job that turns
payloads into source events, webhook set-up and refresh — against the Airtable stand-in at its real
5 requests/s per base, its real webhook sender pinging the app served on a loopback port, and a
real Redis. Fetch jobs are run in-process (the queue is inspected, not drained by a worker)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from connectors.airtable import AirtableConnector
from connectors.base import Collection, FieldSpec, Write
from hub import clock, jobs
from hub.runtime import Runtime
from hub.sandbox.airtable import DEFAULT_BASE, DEFAULT_TOKEN
from hub.sandbox.common import ServerHandle
from hub.settings import Settings
from tests.support.airtable import PENALTY, admin, fast_policy, requests_to
from tests.webhooks.test_app import make_app, served
from webhooks import airtable_cursor as state
from webhooks.airtable import fetch_payloads, refresh_webhooks, setup

PATH = "/webhooks/airtable"
REFRESH = "/v0/bases/<base_id>/webhooks/<hook_id>/refresh"
SECRET = base64.b64encode(bytes(range(32))).decode()
HOOK = "achUnitHook000001"
PERSON = """\
entity: person
identity: [email]
fields:
  email: {type: email, required: true}
  name: string
  visits: number
systems:
  airtable:
    base: BASE
    table: Clients
    fields: {email: Email, name: Name, visits: Visits}
"""
BOOKING = """\
entity: booking
identity: [ref]
fields:
  ref: {type: string, required: true}
systems:
  airtable:
    base: BASE
    table: TABLE
    fields: {ref: Ref}
"""


def mac(secret_b64: str, raw: bytes) -> str:
    """Airtable's documented formula: 'hmac-sha256=' + hex HMAC-SHA256 of the body, keyed with the
    base64-decoded macSecretBase64."""
    return "hmac-sha256=" + hmac.new(base64.b64decode(secret_b64), raw, hashlib.sha256).hexdigest()


def ping_body(webhook: str = HOOK, base: str = DEFAULT_BASE, stamp: str = "2024-05-01T10:00:00.000Z") -> bytes:
    return json.dumps({"base": {"id": base}, "webhook": {"id": webhook}, "timestamp": stamp}).encode()


def write_config(root: Path, base: str = DEFAULT_BASE, bookings: str = "tblBookingsUnit01") -> Path:
    """Clients mapped by table name, bookings by table id."""
    (root / "mappings").mkdir(parents=True, exist_ok=True)
    (root / "mappings" / "person.yaml").write_text(PERSON.replace("BASE", base))
    (root / "mappings" / "booking.yaml").write_text(BOOKING.replace("BASE", base).replace("TABLE", bookings))
    return root


def queued_jobs(conn: redis.Redis, func: str) -> list[Any]:
    return [j for j in jobs.queue(conn, jobs.QUEUE_HIGH).jobs if j.func_name == func]


def source_events(conn: redis.Redis) -> list[dict[str, Any]]:
    out = []
    for job in queued_jobs(conn, state.BATCH_JOB):
        provider, events = job.args
        assert provider == "airtable"
        out.extend(events)
    return out


def run_fetch_jobs(conn: redis.Redis) -> int:
    """Run the queued fetch jobs here, as a worker would (follow-ups included); how many ran."""
    q, ran = jobs.queue(conn, jobs.QUEUE_HIGH), 0
    for _ in range(20):
        todo = queued_jobs(conn, state.FETCH_JOB)
        if not todo:
            return ran
        for job in todo:
            q.remove(job)
            fetch_payloads(*job.args)
            ran += 1
    raise AssertionError("fetch jobs kept coming")


# -- the endpoint: MAC vectors ------------------------------------------------------------------
@pytest.fixture
def client(redis_url: str, redis_conn: redis.Redis, tmp_path: Path) -> FlaskClient:
    state.save_hook(redis_conn, HOOK, base=DEFAULT_BASE, table="tblX", url="http://h/webhooks/airtable",
                    secret=SECRET, expires="2030-01-01T00:00:00.000Z")  # fmt: skip
    return make_app(redis_url, write_config(tmp_path / "config"), redis_conn).test_client()


def post(client: FlaskClient, raw: bytes, signature: str | None, content_type: str = "application/json") -> Any:
    headers = {"Content-Type": content_type, **({"X-Airtable-Content-MAC": signature} if signature else {})}
    return client.post(PATH, data=raw, headers=headers)


def test_a_signed_ping_enqueues_one_fetch_job_and_a_redelivery_none(
    client: FlaskClient, redis_conn: redis.Redis
) -> None:
    raw = ping_body()
    first = post(client, raw, mac(SECRET, raw))
    assert first.status_code == 204 and first.get_data() == b""  # Airtable asks for an empty 200/204
    assert post(client, raw, mac(SECRET, raw)).status_code == 204
    (job,) = queued_jobs(redis_conn, state.FETCH_JOB)
    assert job.func is fetch_payloads  # what a worker will import and run
    assert list(job.args) == [DEFAULT_BASE, [{"webhook": HOOK, "timestamp": "2024-05-01T10:00:00.000Z"}]]
    later = ping_body(stamp="2024-05-01T10:00:05.000Z")
    assert post(client, later, mac(SECRET, later)).status_code == 204
    assert len(queued_jobs(redis_conn, state.FETCH_JOB)) == 2
    assert source_events(redis_conn) == []  # the request path never lists payloads


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("tampered body", "bad X-Airtable-Content-MAC"),
        ("wrong secret", "bad X-Airtable-Content-MAC"),
        ("base64 secret not decoded", "bad X-Airtable-Content-MAC"),
        ("missing header", "missing X-Airtable-Content-MAC"),
        ("unknown webhook", "unknown webhook"),
        ("another base", "another base"),
    ],
)
def test_bad_pings_are_401_and_enqueue_nothing(
    client: FlaskClient, redis_conn: redis.Redis, case: str, says: str
) -> None:
    raw = ping_body()
    signature: str | None = mac(SECRET, raw)
    if case == "tampered body":
        raw = ping_body(stamp="2024-05-01T10:00:01.000Z")
    elif case == "wrong secret":
        signature = mac(base64.b64encode(b"x" * 32).decode(), raw)
    elif case == "base64 secret not decoded":  # the classic mistake: keying with the base64 text itself
        signature = "hmac-sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    elif case == "missing header":
        signature = None
    elif case == "unknown webhook":
        raw = ping_body(webhook="achSomeoneElse001")
        signature = mac(SECRET, raw)
    elif case == "another base":
        raw = ping_body(base="appAnotherBase001")
        signature = mac(SECRET, raw)
    resp = post(client, raw, signature)
    assert resp.status_code == 401 and says in resp.get_json()["error"], resp.get_json()
    assert SECRET not in resp.get_data(as_text=True)
    assert jobs.queue(redis_conn, jobs.QUEUE_HIGH).count == 0


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "says"),
    [
        (b"{not json", "application/json", 400, "malformed JSON"),
        (b"[]", "application/json", 400, "expected a JSON object"),
        (b'{"base": {"id": "app1"}, "timestamp": "t"}', "application/json", 400, "webhook.id"),
        (b'{"base": {"id": 7}, "webhook": {"id": "ach1"}, "timestamp": "t"}', "application/json", 400, "base.id"),
        (b'{"base": {"id": "a"}, "webhook": {"id": "b"}}', "application/json", 400, "timestamp"),
        (ping_body(), "text/plain", 415, "application/json"),
    ],
)
def test_malformed_pings(
    client: FlaskClient, redis_conn: redis.Redis, raw: bytes, content_type: str, status: int, says: str
) -> None:
    resp = post(client, raw, mac(SECRET, raw), content_type)
    assert resp.status_code == status and says in resp.get_json()["error"], resp.get_json()
    assert jobs.queue(redis_conn, jobs.QUEUE_HIGH).count == 0


# -- payloads → events (schema from the Redis cache) --------------------------------------------
def test_payloads_become_one_event_per_record(redis_conn: redis.Redis, tmp_path: Path) -> None:
    from hub.config import loader

    cfg = loader.load(write_config(tmp_path / "c", "appUnit", bookings="tblB"), {})
    schema = {"tblC": {"name": "Clients", "fields": {"fldE": "Email", "fldV": "Visits"}},
              "tblB": {"name": "Bookings", "fields": {"fldR": "Ref"}},
              "tblO": {"name": "Other", "fields": {}}}  # fmt: skip
    redis_conn.set("hub:airtable:schema:appUnit", json.dumps(schema))
    names = state.Names(redis_conn, None, cfg, "appUnit")  # ids all known: no Meta API call

    def payload(stamp: str, table: str, **delta: Any) -> dict[str, Any]:
        return {"timestamp": stamp, "baseTransactionNumber": 1, "payloadFormat": "v0",
                "changedTablesById": {table: delta}}  # fmt: skip

    def changed(*fields: str) -> dict[str, Any]:
        return {"current": {"cellValuesByFieldId": dict.fromkeys(fields, 1)}}

    payloads = [
        payload("2024-05-01T10:00:00.000Z", "tblC", createdRecordsById={"recA": {"cellValuesByFieldId": {}}},
                changedRecordsById={"recB": changed("fldV")}),
        payload("2024-05-01T10:00:01.000Z", "tblC", changedRecordsById={"recA": changed("fldE"),
                                                                         "recB": changed("fldE")}),
        payload("2024-05-01T10:00:02.000Z", "tblC", changedRecordsById={"recC": changed("fldV")}),
        payload("2024-05-01T10:00:03.000Z", "tblC", destroyedRecordIds=["recC"]),
        {"error": True, "code": "INTERNAL_ERROR"},
        payload("2024-05-01T10:00:04.000Z", "tblB", createdRecordsById={"recD": {}}),
        payload("2024-05-01T10:00:05.000Z", "tblO", createdRecordsById={"recZ": {}}, destroyedRecordIds=["recY"]),
    ]  # fmt: skip
    events, unmapped = state.to_events("appUnit", payloads, names)
    t0 = 1714557600000
    assert events == [
        {"system": "airtable", "coll": "Clients", "base": "appUnit", "id": "recA", "kind": "created",
         "at_ms": t0 + 1000, "fields": ["Email"]},
        {"system": "airtable", "coll": "Clients", "base": "appUnit", "id": "recB", "kind": "updated",
         "at_ms": t0 + 1000, "fields": ["Email", "Visits"]},
        {"system": "airtable", "coll": "Clients", "base": "appUnit", "id": "recC", "kind": "deleted",
         "at_ms": t0 + 3000, "fields": []},
        {"system": "airtable", "coll": "tblB", "base": "appUnit", "id": "recD", "kind": "created",
         "at_ms": t0 + 4000, "fields": []},
    ]  # fmt: skip
    assert unmapped == 2  # the unmapped table's two changes


# -- the cursor ---------------------------------------------------------------------------------
def test_the_cursor_moves_only_forward_and_only_once(redis_conn: redis.Redis) -> None:
    state.save_hook(redis_conn, HOOK, base=DEFAULT_BASE, table="tblX", url="u", secret=SECRET, expires=None)
    event = {"system": "airtable", "coll": "Clients", "base": DEFAULT_BASE, "id": "recA", "kind": "created",
             "at_ms": 1, "fields": []}  # fmt: skip

    def cursor() -> int:
        return int(redis_conn.hget(state.hook_key(HOOK), "cursor") or 0)

    assert cursor() == 1
    assert state.commit(redis_conn, HOOK, 1, 3, [event]) is True
    assert state.commit(redis_conn, HOOK, 1, 3, [event]) is False  # the same page read twice: dropped
    assert state.commit(redis_conn, HOOK, 1, 2, [event]) is False  # a stale run's shorter page
    assert state.commit(redis_conn, HOOK, 3, 2, []) is False  # backwards
    assert state.commit(redis_conn, HOOK, 3, 3, []) is True  # nothing new
    assert cursor() == 3 and len(source_events(redis_conn)) == 1


# -- through the stand-in -----------------------------------------------------------------------
class RecordingConnector(AirtableConnector):
    """The real connector, noting each payload list call (cursor asked, cursor returned, payloads)
    and optionally doing something right after the first one (a change while a fetch runs)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[int, int, int]] = []
        self.after_first_list: Callable[[], None] | None = None
        self._guard = threading.Lock()

    def list_payloads(
        self, base: str, webhook_id: str, cursor: int = 1, limit: int = 50
    ) -> tuple[list[dict[str, Any]], int, bool]:
        payloads, end, more = super().list_payloads(base, webhook_id, cursor, limit)
        with self._guard:
            self.calls.append((cursor, end, len(payloads)))
            then, self.after_first_list = self.after_first_list, None
        if then is not None:
            then()
        return payloads, end, more


class Wired:
    def __init__(self, standin: ServerHandle, connector: RecordingConnector, rt: Runtime, app_url: str) -> None:
        self.standin, self.connector, self.rt, self.app_url = standin, connector, rt, app_url
        self.clients = Collection("Clients", DEFAULT_BASE)
        self.bookings = Collection("Bookings", DEFAULT_BASE)

    def hook_for(self, table: str) -> str:
        table_id = self.table_id(table)
        (wid,) = [w for w in state.hook_ids(self.rt.redis) if state.load_hook(self.rt.redis, w).table == table_id]  # type: ignore[union-attr]
        return wid

    def table_id(self, name: str) -> str:
        schema = state.base_schema(self.rt.redis, self.connector, DEFAULT_BASE, fresh=True)
        return next(i for i, t in schema.items() if t["name"] == name)

    def create(self, coll: Collection, **fields: Any) -> str:
        return self.connector.upsert_many(coll, [Write(fields)])[0].id

    def settle(self) -> None:
        """Every ping delivered (retries, duplicates and held-back reorders included)."""
        assert self.standin.standin.sender.wait_idle(20)


@pytest.fixture
def wired(airtable_standin: ServerHandle, redis_url: str, redis_conn: redis.Redis, tmp_path: Path) -> Iterator[Wired]:
    connector = RecordingConnector(DEFAULT_TOKEN, endpoint_url=airtable_standin.url, conn=redis_conn,
                                   penalty_seconds=PENALTY, timeout=(2, 10), policy=fast_policy())  # fmt: skip
    connector.ensure_schema(
        Collection("Clients", DEFAULT_BASE),
        [FieldSpec("Email", "email"), FieldSpec("Name"), FieldSpec("Visits", "number")],
    )
    connector.ensure_schema(Collection("Bookings", DEFAULT_BASE), [FieldSpec("Ref")])
    schema = state.base_schema(redis_conn, connector, DEFAULT_BASE, fresh=True)
    bookings = next(i for i, t in schema.items() if t["name"] == "Bookings")
    config = write_config(tmp_path / "config", bookings=bookings)  # mapped by id
    env = {"REDIS_URL": redis_url, "AIRTABLE_API_KEY": DEFAULT_TOKEN, "AIRTABLE_ENDPOINT_URL": airtable_standin.url}
    rt = Runtime(Settings(env=env), config_dir=config, conn=redis_conn)
    rt.use_connector("airtable", connector)
    Runtime.install(rt)
    try:
        with served(make_app(redis_url, config, redis_conn)) as url:
            yield Wired(airtable_standin, connector, rt, url)
            airtable_standin.standin.sender.wait_idle(20)
    finally:
        Runtime.install(None)


@pytest.mark.parametrize("faults", [{}, {"webhook_duplicate_rate": 1.0, "webhook_reorder_rate": 0.5, "seed": 7}])
def test_changes_in_the_standin_become_one_event_each(wired: Wired, redis_conn: redis.Redis,
                                                      faults: dict[str, Any]) -> None:  # fmt: skip
    kept = wired.create(wired.clients, Email="kept@example.com", Visits=1)  # before the webhooks: no event
    gone = wired.create(wired.clients, Email="gone@example.com")
    report = setup(wired.rt, wired.app_url)
    assert {t: e["created"] for t, e in report["bases"][DEFAULT_BASE].items()} == {
        "Clients": True, wired.table_id("Bookings"): True}  # fmt: skip
    if faults:
        admin(wired.standin, "/_sandbox/faults", faults)
    new = wired.create(wired.clients, Email="new@example.com", Name="New")
    wired.connector.upsert_many(wired.clients, [Write({"Visits": 2}, id=kept)])
    wired.connector.delete(wired.clients, [gone])
    booking = wired.create(wired.bookings, Ref="B-1")
    wired.settle()
    assert run_fetch_jobs(redis_conn) >= 2  # at least one ping per webhook got through
    got = Counter((e["coll"], e["id"], e["kind"], tuple(e["fields"])) for e in source_events(redis_conn))
    assert got == Counter({
        ("Clients", new, "created", ()): 1,
        ("Clients", kept, "updated", ("Visits",)): 1,
        ("Clients", gone, "deleted", ()): 1,
        (wired.table_id("Bookings"), booking, "created", ()): 1,
    })  # fmt: skip
    assert {(e["system"], e["base"]) for e in source_events(redis_conn)} == {("airtable", DEFAULT_BASE)}
    clients_hook = state.load_hook(redis_conn, wired.hook_for("Clients"))
    assert clients_hook is not None and clients_hook.cursor == 4  # three payloads read, once each
    if faults:
        assert admin(wired.standin, "/_sandbox/stats")["webhooks"].get("duplicated", 0) >= 1


def test_three_concurrent_fetches_list_each_payload_once(wired: Wired, redis_conn: redis.Redis) -> None:
    setup(wired.rt, wired.app_url)
    made = [wired.create(wired.clients, Email=f"c{i}@example.com") for i in range(5)]
    wired.settle()
    admin(wired.standin, "/_sandbox/faults", {"latency_ms": 40})  # fetches overlap
    hook = wired.hook_for("Clients")
    start = threading.Barrier(3)
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def ping() -> None:
        try:
            start.wait(10)
            results.append(fetch_payloads(DEFAULT_BASE, hook))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=ping) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 3
    with_payloads = sorted((a, b) for a, b, n in wired.connector.calls if n)
    assert sum(n for _, _, n in wired.connector.calls) == 5  # every payload listed exactly once
    assert all(b1 <= a2 for (_, b1), (a2, _) in itertools.pairwise(with_payloads))
    assert sum(r.get("payloads", 0) for r in results) == 5
    got = Counter(e["id"] for e in source_events(redis_conn))
    assert got == Counter(made)
    assert state.load_hook(redis_conn, hook).cursor == 6  # type: ignore[union-attr]
    # The pings the stand-in sent meanwhile still run: they find nothing new.
    run_fetch_jobs(redis_conn)
    assert Counter(e["id"] for e in source_events(redis_conn)) == Counter(made)


def test_a_ping_during_a_fetch_is_not_lost(wired: Wired, redis_conn: redis.Redis) -> None:
    setup(wired.rt, wired.app_url)
    first = wired.create(wired.clients, Email="first@example.com")
    wired.settle()
    hook = wired.hook_for("Clients")
    late: dict[str, Any] = {}

    def change_while_fetching() -> None:  # the first fetch has read its page and not yet committed
        late["id"] = wired.create(wired.clients, Email="late@example.com")
        late["second"] = fetch_payloads(DEFAULT_BASE, hook)  # its ping's job: the lock is taken

    wired.connector.after_first_list = change_while_fetching
    counts = fetch_payloads(DEFAULT_BASE, hook)
    assert late["second"] == {"left_to_running_fetch": 1}
    assert counts["payloads"] == 2 and counts["pages"] >= 2
    assert Counter(e["id"] for e in source_events(redis_conn)) == Counter([first, late["id"]])
    wired.settle()
    run_fetch_jobs(redis_conn)
    assert Counter(e["id"] for e in source_events(redis_conn)) == Counter([first, late["id"]])


def test_a_field_added_after_the_schema_was_cached_is_named(wired: Wired, redis_conn: redis.Redis) -> None:
    setup(wired.rt, wired.app_url)  # caches the base schema
    record = wired.create(wired.clients, Email="s@example.com")
    wired.settle()
    run_fetch_jobs(redis_conn)
    wired.connector.ensure_schema(wired.clients, [FieldSpec("Score", "number")])
    wired.connector.upsert_many(wired.clients, [Write({"Score": 7}, id=record)])
    wired.settle()
    run_fetch_jobs(redis_conn)
    assert [(e["kind"], e["fields"]) for e in source_events(redis_conn)] == [("created", []), ("updated", ["Score"])]


def test_pages_are_read_while_airtable_might_have_more(
    wired: Wired, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup(wired.rt, wired.app_url)
    made = [wired.create(wired.clients, Email=f"p{i}@example.com") for i in range(5)]
    wired.settle()
    monkeypatch.setattr(state, "PAGE", 2)
    counts = fetch_payloads(DEFAULT_BASE, wired.hook_for("Clients"))
    assert counts["payloads"] == 5 and counts["pages"] == 3
    assert [c[:2] for c in wired.connector.calls] == [(1, 3), (3, 5), (5, 6)]
    assert len(queued_jobs(redis_conn, state.BATCH_JOB)) == 3  # one job per page, with the cursor move
    assert [e["id"] for e in source_events(redis_conn)] == made


# -- set-up and refresh -------------------------------------------------------------------------
def test_setup_is_idempotent_and_replaces_a_webhook_it_cannot_verify(wired: Wired, redis_conn: redis.Redis) -> None:
    first = setup(wired.rt, wired.app_url + "/")
    assert first["target"] == wired.app_url + PATH
    entries = first["bases"][DEFAULT_BASE]
    clients = entries["Clients"]
    assert clients["created"] is True and clients["removed"] == 0
    stored = {k.decode(): v.decode() for k, v in redis_conn.hgetall(state.hook_key(clients["webhook"])).items()}  # type: ignore[union-attr]
    assert stored["cursor"] == "1" and stored["secret"] and stored["base"] == DEFAULT_BASE
    assert stored["secret"] not in json.dumps(first)
    hooks = wired.connector.list_webhooks(DEFAULT_BASE)
    spec = next(h for h in hooks if h["id"] == clients["webhook"])["specification"]["options"]
    assert spec["filters"]["dataTypes"] == ["tableData"]
    assert spec["filters"]["recordChangeScope"] == wired.table_id("Clients")
    assert spec["includes"]["includePreviousCellValues"] is False

    again = setup(wired.rt, wired.app_url)["bases"][DEFAULT_BASE]
    assert {t: (e["webhook"], e["created"]) for t, e in again.items()} == {
        t: (e["webhook"], False) for t, e in entries.items()}  # fmt: skip
    assert len(wired.connector.list_webhooks(DEFAULT_BASE)) == 2

    state.forget_hook(redis_conn, clients["webhook"])  # the secret is lost: its pings cannot be verified
    replaced = setup(wired.rt, wired.app_url)["bases"][DEFAULT_BASE]["Clients"]
    assert replaced["created"] is True and replaced["removed"] == 1 and replaced["webhook"] != clients["webhook"]
    assert clients["webhook"] not in {h["id"] for h in wired.connector.list_webhooks(DEFAULT_BASE)}


def test_setup_reports_a_missing_table(wired: Wired, redis_conn: redis.Redis) -> None:
    (wired.rt.config_dir / "mappings" / "person.yaml").write_text(PERSON.replace("BASE", DEFAULT_BASE)
                                                                  .replace("Clients", "Nowhere"))  # fmt: skip
    rt = Runtime(wired.rt.settings, config_dir=wired.rt.config_dir, conn=redis_conn)
    rt.use_connector("airtable", wired.connector)
    entry = setup(rt, wired.app_url)["bases"][DEFAULT_BASE]
    assert "no table 'Nowhere'" in entry["Nowhere"]["error"]
    assert entry[wired.table_id("Bookings")]["created"] is True


def test_refresh_extends_webhooks_close_to_expiry(wired: Wired, redis_conn: redis.Redis) -> None:
    setup(wired.rt, wired.app_url)
    ids = state.hook_ids(redis_conn)
    before = {w: state.load_hook(redis_conn, w).expires for w in ids}  # type: ignore[union-attr]
    admin(wired.standin, "/_sandbox/stats/reset", {})
    fresh = refresh_webhooks()
    assert fresh["refreshed"] == [] and fresh["kept"] == 2  # 7 days left: nothing to do
    assert requests_to(admin(wired.standin, "/_sandbox/stats"), "POST", REFRESH) == 0

    gone = ids[0]
    wired.connector.delete_webhook(DEFAULT_BASE, gone)  # removed behind the hub's back
    with clock.pinned(clock.now() + timedelta(days=6)):
        report = refresh_webhooks()
    assert report["refreshed"] == ids[1:] and list(report["failed"]) == [gone]
    assert requests_to(admin(wired.standin, "/_sandbox/stats"), "POST", REFRESH) == 2
    after = state.load_hook(redis_conn, ids[1])
    assert after is not None and clock.parse_instant(after.expires) > clock.parse_instant(before[ids[1]])

    redone = setup(wired.rt, wired.app_url)  # set-up drops what Airtable no longer has and replaces it
    assert redone["forgotten"] == [gone] and gone not in state.hook_ids(redis_conn)
    assert sorted(e["created"] for e in redone["bases"][DEFAULT_BASE].values()) == [False, True]


def test_refresh_resumes_a_fetch_a_dead_worker_left(wired: Wired, redis_conn: redis.Redis) -> None:
    setup(wired.rt, wired.app_url)
    hook = wired.hook_for("Clients")
    made = wired.create(wired.clients, Email="stranded@example.com")
    wired.settle()
    jobs.queue(redis_conn, jobs.QUEUE_HIGH).empty()  # the ping's job was taken by a worker that died
    redis_conn.set(f"{state.hook_key(hook)}:pending", 1)
    assert refresh_webhooks()["resumed"] == [hook]
    run_fetch_jobs(redis_conn)
    assert [e["id"] for e in source_events(redis_conn)] == [made]
