"""The Airtable connector over the wire: pyairtable against the stand-in at Airtable's real
5 requests/s per base, with the quota shared through a real Redis."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import redis
import requests
from pyairtable import Api

from connectors.airtable import AirtableConnector, connect, verify_ping
from connectors.base import Collection, Connector, FieldSpec, Write
from hub.errors import ConfigError, MissingSetting, PermanentError, TransientError
from hub.sandbox.airtable import DEFAULT_BASE, DEFAULT_TOKEN
from hub.sandbox.common import ServerHandle
from hub.settings import Settings
from tests.support.airtable import PENALTY, PingReceiver, admin, fast_policy, requests_to

CLIENTS = Collection("Clients", DEFAULT_BASE)
SPECS = [
    FieldSpec("Email", "email"),
    FieldSpec("Name", "string", label="Full name"),
    FieldSpec("Notes", "text"),
    FieldSpec("Phone", "phone"),
    FieldSpec("Visits", "number"),
    FieldSpec("VIP", "bool"),
    FieldSpec("Since", "date"),
    FieldSpec("Seen", "datetime"),
    FieldSpec("Status", "enum", options=("lead", "active")),
]
RECORDS = "/v0/<base_id>/<table>"


@pytest.fixture
def clients(airtable: AirtableConnector) -> Collection:
    assert airtable.ensure_schema(CLIENTS, SPECS) == [s.name for s in SPECS]
    return CLIENTS


def test_is_a_connector(airtable: AirtableConnector) -> None:
    assert isinstance(airtable, Connector) and airtable.system == "airtable"


def test_ensure_schema_creates_only_what_is_missing(
    airtable: AirtableConnector, airtable_standin: ServerHandle, clients: Collection
) -> None:
    assert airtable.ensure_schema(clients, SPECS) == []
    more = [*SPECS[:-1], FieldSpec("Status", "enum", options=("lead", "active", "churned")), FieldSpec("Score")]
    assert airtable.ensure_schema(clients, more) == ["Score"]
    schema = Api(DEFAULT_TOKEN, endpoint_url=airtable_standin.url).base(DEFAULT_BASE).schema().table("Clients")
    assert [c.name for c in schema.field("Status").options.choices] == ["lead", "active", "churned"]  # type: ignore[union-attr]
    assert schema.field("Seen").type == "dateTime" and schema.field("VIP").type == "checkbox"
    assert schema.field("Name").description == "Full name"
    # a checkbox cannot be a primary field: the first text field leads instead
    assert airtable.ensure_schema(Collection("Flags", DEFAULT_BASE), [FieldSpec("On", "bool"), FieldSpec("Id")])
    flags = Api(DEFAULT_TOKEN, endpoint_url=airtable_standin.url).base(DEFAULT_BASE).schema(force=True)
    assert flags.table("Flags").fields[0].name == "Id"
    with pytest.raises(ConfigError, match="unknown type 'money'"):
        airtable.ensure_schema(clients, [FieldSpec("Price", "money")])


def test_crud_and_identity_matching(airtable: AirtableConnector, clients: Collection) -> None:
    written = airtable.upsert_many(clients, [
        Write({"Email": "ann@x.io", "Name": "Ann O'Hara", "Visits": 3}),
        Write({"Email": "bob@x.io", "Name": "Bob", "Status": "lead"}, match="Email"),
    ])
    ann, bob = written
    assert ann.fields["Name"] == "Ann O'Hara" and ann.created_at is not None
    again = airtable.upsert_many(clients, [
        Write({"Email": "bob@x.io", "Visits": 9}, match="Email"),  # same key: updates Bob
        Write({"VIP": True}, id=ann.id),
    ])
    assert [r.id for r in again] == [bob.id, ann.id]
    assert again[0].fields == {"Email": "bob@x.io", "Name": "Bob", "Status": "lead", "Visits": 9}
    assert [r.id for r in airtable.find(clients, "Name", "Ann O'Hara")] == [ann.id]
    assert [r.id for r in airtable.find(clients, "Email", "BOB@x.io")] == []  # exact match, as Airtable
    assert [r.id for r in airtable.find(clients, "Status", None)] == [ann.id]
    got = airtable.get(clients, ann.id)
    assert got is not None and got.fields["VIP"] is True
    assert [r.id for r in airtable.get_many(clients, [bob.id, "recMissing0000000", ann.id])] == [bob.id, ann.id]
    airtable.delete(clients, [ann.id])
    assert airtable.get(clients, ann.id) is None
    airtable.delete(clients, [ann.id, bob.id])  # ann is already gone: the rest is still deleted
    assert list(airtable.iterate(clients)) == []


def test_writes_are_chunked_ten_per_request(
    airtable: AirtableConnector, airtable_standin: ServerHandle, clients: Collection
) -> None:
    admin(airtable_standin, "/_sandbox/stats/reset", {})
    made = airtable.upsert_many(clients, [Write({"Email": f"c{i}@x.io", "Visits": i}) for i in range(25)])
    assert [r.fields["Visits"] for r in made] == list(range(25))
    upserts = airtable.upsert_many(clients, [Write({"Email": f"c{i}@x.io", "VIP": True}, match="Email")
                                             for i in range(12)])
    assert [r.id for r in upserts] == [r.id for r in made[:12]]
    stats = admin(airtable_standin, "/_sandbox/stats")
    assert requests_to(stats, "POST", RECORDS) == 3
    assert requests_to(stats, "PATCH", RECORDS) == 2


def test_paging_streams_every_record(
    airtable: AirtableConnector, airtable_standin: ServerHandle, clients: Collection
) -> None:
    airtable.upsert_many(clients, [Write({"Email": f"p{i:03d}@x.io", "Visits": i % 7}) for i in range(260)])
    admin(airtable_standin, "/_sandbox/stats/reset", {})
    seen = [r.fields["Email"] for r in airtable.iterate(clients)]
    assert seen == [f"p{i:03d}@x.io" for i in range(260)]
    assert requests_to(admin(airtable_standin, "/_sandbox/stats"), "GET", RECORDS) == 3
    sixes = list(airtable.iterate(clients, where={"Visits": 6}, page_size=10))
    assert len(sixes) == len([i for i in range(260) if i % 7 == 6])


def test_changed_since_and_updated_at(
    airtable: AirtableConnector, airtable_standin: ServerHandle, clients: Collection
) -> None:
    Api(DEFAULT_TOKEN, endpoint_url=airtable_standin.url).table(DEFAULT_BASE, "Clients").create_field(
        "Modified", "lastModifiedTime")
    airtable.ensure_schema(clients, SPECS)  # refreshes the cached schema
    old, new = airtable.upsert_many(clients, [Write({"Email": "old@x.io"}), Write({"Email": "new@x.io"})])
    assert old.updated_at is not None
    time.sleep(0.01)  # Airtable's timestamps have millisecond precision
    cutoff = datetime.now(UTC)
    time.sleep(0.01)
    touched = airtable.upsert_many(clients, [Write({"Visits": 1}, id=new.id)])[0]
    assert touched.updated_at is not None and touched.updated_at > cutoff
    assert [r.id for r in airtable.iterate(clients, changed_since=cutoff)] == [new.id]
    assert [r.id for r in airtable.iterate(clients, where={"Email": "new@x.io"}, changed_since=cutoff)] == [new.id]


def test_permanent_errors_name_table_and_field(
    airtable: AirtableConnector, airtable_standin: ServerHandle, clients: Collection
) -> None:
    cases = [
        (Write({"Emial": "typo@x.io"}), "Emial", "UNKNOWN_FIELD_NAME"),
        (Write({"Visits": "many"}), "Visits", "INVALID_VALUE_FOR_COLUMN"),
        (Write({"Email": "s@x.io", "Status": "vip"}), "Status", "INVALID_MULTIPLE_CHOICE_OPTIONS"),
    ]
    for write, field, kind in cases:
        admin(airtable_standin, "/_sandbox/stats/reset", {})
        with pytest.raises(PermanentError) as exc:
            airtable.upsert_many(clients, [write])
        err = exc.value
        assert (err.system, err.obj, err.field, err.status) == ("airtable", "Clients", field, 422)
        assert kind in str(err) and str(err).startswith(f"airtable/Clients/{field}: ")
        assert requests_to(admin(airtable_standin, "/_sandbox/stats"), "POST", RECORDS) == 1  # not retried
    with pytest.raises(PermanentError) as exc:
        airtable.upsert_many(clients, [Write({"Name": "no key"}, match="Email")])
    assert exc.value.field == "Email"
    with pytest.raises(PermanentError) as exc:
        airtable.get(Collection("Nope", DEFAULT_BASE), "recAnything000000")
    assert exc.value.status == 403 and exc.value.obj == "Nope"


def test_transient_500s_are_retried(
    airtable: AirtableConnector, airtable_standin: ServerHandle, clients: Collection
) -> None:
    admin(airtable_standin, "/_sandbox/faults", {"error_rate": 0.4, "error_statuses": [500, 502, 503], "seed": 3})
    admin(airtable_standin, "/_sandbox/stats/reset", {})
    writes = [Write({"Email": f"r{i}@x.io", "Visits": i}, match="Email") for i in range(30)]
    assert len(airtable.upsert_many(clients, writes)) == 30
    stats = admin(airtable_standin, "/_sandbox/stats")
    assert sum(n for code, n in stats["statuses"].items() if code.startswith("5")) > 0
    admin(airtable_standin, "/_sandbox/faults", {"error_rate": 0.0})
    emails = sorted(r.fields["Email"] for r in airtable.iterate(clients))
    assert emails == sorted(f"r{i}@x.io" for i in range(30))  # each exactly once

    admin(airtable_standin, "/_sandbox/faults", {"error_rate": 1.0, "error_statuses": [503]})
    admin(airtable_standin, "/_sandbox/stats/reset", {})
    with pytest.raises(TransientError):  # bounded: gives up after the policy's attempts
        airtable.get(clients, "recAnything000000")
    assert admin(airtable_standin, "/_sandbox/stats")["statuses"] == {"503": fast_policy().attempts}


def test_a_429_is_honoured(
    airtable: AirtableConnector, airtable_standin: ServerHandle, clients: Collection, redis_conn: redis.Redis
) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {DEFAULT_TOKEN}"
    url = f"{airtable_standin.url}/v0/{DEFAULT_BASE}/Clients"
    codes = [session.get(url, timeout=10).status_code for _ in range(6)]  # someone else floods the base
    assert 429 in codes
    admin(airtable_standin, "/_sandbox/stats/reset", {})
    assert list(airtable.iterate(clients)) == []  # waited out the penalty, then succeeded
    stats = admin(airtable_standin, "/_sandbox/stats")
    assert stats["statuses"].get("429", 0) >= 1 and stats["statuses"]["200"] >= 1
    assert redis_conn.exists("hub:quota:airtable:base:" + DEFAULT_BASE)  # the shared quota was pushed back
    assert PENALTY < 5  # the test's penalty keeps this quick


def test_webhooks(
    airtable: AirtableConnector, airtable_standin: ServerHandle, clients: Collection, ping_receiver: PingReceiver
) -> None:
    made = airtable.create_webhook(DEFAULT_BASE, ping_receiver.url)
    assert made["id"].startswith("ach") and made["macSecretBase64"] and made["expirationTime"]
    assert [h["id"] for h in airtable.list_webhooks(DEFAULT_BASE)] == [made["id"]]
    record = airtable.upsert_many(clients, [Write({"Email": "h@x.io"})])[0]
    airtable.upsert_many(clients, [Write({"Visits": 2}, id=record.id)])
    assert admin(airtable_standin, "/_sandbox/webhooks/flush?timeout=10", {})["idle"]
    headers, body = ping_receiver.pings[0]
    ping = verify_ping(body, headers["X-Airtable-Content-MAC"], made["macSecretBase64"])
    assert ping["webhook"]["id"] == made["id"]
    with pytest.raises(ValueError, match="does not match"):
        verify_ping(body + b" ", headers["X-Airtable-Content-MAC"], made["macSecretBase64"])
    first, cursor, more = airtable.list_payloads(DEFAULT_BASE, made["id"], cursor=1, limit=1)
    assert (len(first), cursor, more) == (1, 2, True)
    assert record.id in next(iter(first[0]["changedTablesById"].values()))["createdRecordsById"]
    rest, cursor, more = airtable.list_payloads(DEFAULT_BASE, made["id"], cursor=cursor)
    assert (len(rest), cursor, more) == (1, 3, False)
    assert airtable.refresh_webhook(DEFAULT_BASE, made["id"])
    airtable.delete_webhook(DEFAULT_BASE, made["id"])
    assert airtable.list_webhooks(DEFAULT_BASE) == []


def test_connect_reads_the_environment(airtable_standin: ServerHandle) -> None:
    env = {"AIRTABLE_API_KEY": DEFAULT_TOKEN, "AIRTABLE_ENDPOINT_URL": airtable_standin.url}
    connector = connect(Settings(env=env), None)
    assert connector.governor(DEFAULT_BASE) is None  # no Redis, no shared quota
    assert connector.ensure_schema(Collection("Solo", DEFAULT_BASE), [FieldSpec("Name")]) == ["Name"]
    with pytest.raises(MissingSetting, match="AIRTABLE_API_KEY"):
        connect(Settings(env={"AIRTABLE_ENDPOINT_URL": airtable_standin.url}), None)
    with pytest.raises(ConfigError, match="no base id"):
        connector.get(Collection("Clients"), "recX")
