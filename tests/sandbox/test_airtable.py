"""The Airtable stand-in, driven by pyairtable itself over HTTP: every response shape the hub
uses must parse in the real SDK, and limits, errors, rate limiting, persistence and webhooks must
behave as Airtable documents them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from pyairtable import Api, Table
from pyairtable.formulas import (
    AND,
    CREATED_TIME,
    EQ,
    FIND,
    GT,
    IF,
    IS_AFTER,
    LAST_MODIFIED_TIME,
    LOWER,
    NOT,
    OR,
    RECORD_ID,
    TRIM,
    Field,
    match,
    to_formula_str,
)
from pyairtable.models import WebhookNotification

from hub.sandbox.airtable import DEFAULT_BASE, DEFAULT_TOKEN, AirtableStandIn, exports
from hub.sandbox.common import ServerHandle, serve
from tests.support.airtable import PingReceiver, admin, quiet_werkzeug, requests_to
from tests.support.procs import wait_for

FIELDS: list[dict[str, Any]] = [
    {"name": "Email", "type": "email"},
    {"name": "Name", "type": "singleLineText"},
    {"name": "Notes", "type": "multilineText"},
    {"name": "Phone", "type": "phoneNumber"},
    {"name": "Spent", "type": "currency", "options": {"precision": 2, "symbol": "€"}},
    {"name": "Visits", "type": "number", "options": {"precision": 0}},
    {"name": "VIP", "type": "checkbox", "options": {"icon": "check", "color": "greenBright"}},
    {"name": "Status", "type": "singleSelect", "options": {"choices": [{"name": "lead"}, {"name": "active"}]}},
    {"name": "Tags", "type": "multipleSelects", "options": {"choices": [{"name": "tennis"}]}},
    {"name": "Since", "type": "date", "options": {"dateFormat": {"name": "iso"}}},
    {"name": "Seen", "type": "dateTime", "options": {
        "dateFormat": {"name": "iso"}, "timeFormat": {"name": "24hour"}, "timeZone": "utc"}},
]


def http_error(exc: pytest.ExceptionInfo[requests.HTTPError]) -> tuple[int, dict[str, Any]]:
    resp = exc.value.response
    assert resp is not None
    return resp.status_code, resp.json()


@pytest.fixture
def standin() -> Iterator[ServerHandle]:
    """A stand-in without the 5 req/s limit, for tests about everything else."""
    quiet_werkzeug()
    handle = serve(AirtableStandIn(rate_limit=10_000))
    yield handle
    handle.stop()


@pytest.fixture
def api(standin: ServerHandle) -> Api:
    return Api(DEFAULT_TOKEN, endpoint_url=standin.url, retry_strategy=None, timeout=(5, 30))


@pytest.fixture
def clients(api: Api) -> Table:
    return api.base(DEFAULT_BASE).create_table("Clients", FIELDS)


def test_schema_round_trips_through_pyairtable_models(api: Api, clients: Table) -> None:
    added = clients.create_field("Modified", "lastModifiedTime")
    schema = api.base(DEFAULT_BASE).schema(force=True).table("Clients")
    assert [f.name for f in schema.fields] == [f["name"] for f in FIELDS] + ["Modified"]
    assert schema.primary_field_id == schema.field("Email").id
    assert schema.field("Status").options.choices[1].name == "active"  # type: ignore[union-attr]
    assert schema.field("Seen").options.time_zone == "utc"  # type: ignore[union-attr]
    assert added.type == "lastModifiedTime"
    assert schema.views[0].visible_field_ids == [f.id for f in schema.fields]
    assert [b.id for b in api.bases()] == [DEFAULT_BASE]


def test_ids_have_airtable_shapes(api: Api, clients: Table, ping_receiver: PingReceiver) -> None:
    record = clients.create({"Email": "a@b.c"})
    schema = clients.schema()
    hook = api.base(DEFAULT_BASE).add_webhook(ping_receiver.url, {"options": {"filters": {"dataTypes": ["tableData"]}}})
    shapes = {"rec": record["id"], "tbl": schema.id, "fld": schema.fields[0].id, "viw": schema.views[0].id,
              "app": DEFAULT_BASE, "ach": hook.id,
              "sel": schema.field("Status").options.choices[0].id}  # type: ignore[union-attr]
    for prefix, value in shapes.items():
        assert re.fullmatch(prefix + r"[0-9A-Za-z]{14}", value), (prefix, value)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["createdTime"])


def test_records_crud_with_every_field_type(clients: Table) -> None:
    made = clients.create({
        "Email": "jane@example.com", "Name": "Jane", "Notes": "line 1\nline 2", "Phone": "+33 6 12 34 56 78",
        "Spent": 1234.5, "Visits": 7, "VIP": True, "Status": "active", "Tags": ["tennis"],
        "Since": "2024-05-01", "Seen": "2024-05-01T10:30:00+02:00",
    })
    got = clients.get(made["id"])
    assert got["fields"]["Seen"] == "2024-05-01T08:30:00.000Z"
    assert got["fields"]["Spent"] == 1234.5 and got["fields"]["VIP"] is True
    patched = clients.update(made["id"], {"VIP": False, "Visits": 8})
    assert "VIP" not in patched["fields"] and patched["fields"]["Name"] == "Jane"  # unticked = omitted
    replaced = clients.update(made["id"], {"Email": "jane@example.com"}, replace=True)
    assert replaced["fields"] == {"Email": "jane@example.com"}  # PUT clears the rest
    assert clients.delete(made["id"]) == {"id": made["id"], "deleted": True}
    with pytest.raises(requests.HTTPError) as exc:
        clients.get(made["id"])
    assert http_error(exc) == (404, {"error": {"type": "MODEL_ID_NOT_FOUND", "message": "Record not found"}})


def test_batches_pages_and_the_post_list_form(standin: ServerHandle, clients: Table) -> None:
    created = clients.batch_create([{"Email": f"c{i}@x.io", "Visits": i} for i in range(25)])
    assert [r["fields"]["Visits"] for r in created] == list(range(25))
    pages = list(clients.iterate(page_size=10))
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [r["id"] for p in pages for r in p] == [r["id"] for r in created]
    assert len(clients.all(max_records=12, page_size=5)) == 12
    updated = clients.batch_update([{"id": r["id"], "fields": {"Name": "x"}} for r in created[:12]])
    assert len(updated) == 12 and all(r["fields"]["Name"] == "x" for r in updated)
    assert len(clients.batch_delete([r["id"] for r in created[:11]])) == 11
    huge = OR(*(EQ(Field("Email"), f"c{i}@x.io") for i in range(600)))  # > 16,000 chars: sent as POST
    admin(standin, "/_sandbox/stats/reset", {})
    assert len(clients.all(formula=huge)) == 14
    stats = admin(standin, "/_sandbox/stats")
    assert requests_to(stats, "POST", "/v0/<base_id>/<table>/listRecords") == 1


def test_batch_limits_are_airtables(api: Api, clients: Table) -> None:
    url = clients.urls.records
    with pytest.raises(requests.HTTPError) as exc:
        api.post(url, json={"records": [{"fields": {"Name": str(i)}} for i in range(11)]})
    status, body = http_error(exc)
    assert status == 422 and body["error"]["type"] == "INVALID_RECORDS"
    assert body["error"]["message"].startswith("A maximum of 10 records can be created per request")
    with pytest.raises(requests.HTTPError) as exc:
        clients.all(page_size=101)
    assert http_error(exc)[0] == 422
    made = clients.batch_create([{"Name": str(i)} for i in range(10)])
    with pytest.raises(requests.HTTPError) as exc:
        api.request("PATCH", url, json={"records": [{"id": r["id"], "fields": {}} for r in made] * 2})
    assert http_error(exc)[1]["error"]["type"] == "INVALID_RECORDS"
    with pytest.raises(requests.HTTPError) as exc:
        api.delete(url, params={"records[]": [r["id"] for r in made] + [made[0]["id"]]})
    assert http_error(exc)[0] == 422
    assert len(clients.all()) == 10


def test_upsert_creates_updates_and_refuses_ambiguous_matches(clients: Table) -> None:
    first = clients.batch_upsert([{"fields": {"Email": "a@x.io", "Visits": 1}}], key_fields=["Email"])
    assert len(first["createdRecords"]) == 1 and first["updatedRecords"] == []
    again = clients.batch_upsert([{"fields": {"Email": "a@x.io", "Visits": 2}},
                                  {"fields": {"Email": "b@x.io", "Visits": 3}},
                                  {"fields": {"Email": "b@x.io", "Visits": 4}}], key_fields=["Email"])
    assert again["updatedRecords"][0] == first["createdRecords"][0]
    assert len(again["createdRecords"]) == 1  # the same new key twice in one request is one record
    assert {r["fields"]["Email"]: r["fields"]["Visits"] for r in clients.all()} == {"a@x.io": 2, "b@x.io": 4}
    clients.create({"Email": "b@x.io"})
    with pytest.raises(requests.HTTPError) as exc:
        clients.batch_upsert([{"fields": {"Email": "a@x.io", "Visits": 9}},
                              {"fields": {"Email": "b@x.io", "Visits": 9}}], key_fields=["Email"])
    status, body = http_error(exc)
    assert status == 422 and "fieldsToMergeOn" in body["error"]["message"]
    assert sorted(r["fields"].get("Visits", 0) for r in clients.all()) == [0, 2, 4]  # nothing applied


def test_field_errors_and_typecast(api: Api, clients: Table) -> None:
    cases = [({"Nope": 1}, "UNKNOWN_FIELD_NAME", 'Unknown field name: "Nope"'),
             ({"Visits": "seven"}, "INVALID_VALUE_FOR_COLUMN", 'Field "Visits" cannot accept the provided value'),
             ({"Status": "vip"}, "INVALID_MULTIPLE_CHOICE_OPTIONS",
              'Insufficient permissions to create new select option ""vip""'),
             ({"VIP": "yes"}, "INVALID_VALUE_FOR_COLUMN", 'Field "VIP" cannot accept the provided value')]
    for fields, kind, message in cases:
        with pytest.raises(requests.HTTPError) as exc:
            clients.create(fields)
        assert http_error(exc) == (422, {"error": {"type": kind, "message": message}})
    made = clients.create({"Status": "vip", "Visits": "12", "VIP": "yes", "Tags": "tennis, padel"}, typecast=True)
    assert made["fields"] == {"Status": "vip", "Visits": 12, "VIP": True, "Tags": ["tennis", "padel"]}
    status = api.base(DEFAULT_BASE).schema(force=True).table("Clients").field("Status")
    assert [c.name for c in status.options.choices] == ["lead", "active", "vip"]  # type: ignore[union-attr]
    clients.create_field("Created", "createdTime")
    with pytest.raises(requests.HTTPError) as exc:
        clients.create({"Created": "2024-01-01T00:00:00.000Z"})
    assert "computed" in http_error(exc)[1]["error"]["message"]


@pytest.fixture
def people(clients: Table) -> dict[str, str]:
    rows = [{"Email": "ann@x.io", "Name": "Ann O'Hara", "Visits": 12, "VIP": True, "Status": "active"},
            {"Email": "bob@x.io", "Name": "  Bob  ", "Visits": 3, "Status": "lead", "Since": "2020-01-01"},
            {"Email": "cy@x.io", "Visits": 0, "Tags": ["tennis"]}]
    return {r["fields"]["Email"]: r["id"] for r in clients.batch_create(rows)}


def test_formulas_pyairtable_emits(clients: Table, people: dict[str, str]) -> None:
    past = datetime(2000, 1, 1, tzinfo=UTC)
    cases: list[tuple[Any, set[str]]] = [
        (match({"Name": "Ann O'Hara"}), {"ann@x.io"}),
        (match({"Status": "lead", "Visits": 3}), {"bob@x.io"}),
        (match({"Visits": (">=", 3)}), {"ann@x.io", "bob@x.io"}),
        (AND(GT(Field("Visits"), 2), NOT(EQ(Field("VIP"), True))), {"bob@x.io"}),
        (OR(EQ(Field("Email"), "cy@x.io"), EQ(LOWER(Field("Status")), "active")), {"ann@x.io", "cy@x.io"}),
        (EQ(TRIM(Field("Name")), "Bob"), {"bob@x.io"}),
        (EQ(Field("Name"), ""), {"cy@x.io"}),  # a blank equals ""
        ("{Name}=BLANK()", {"cy@x.io"}),
        (FIND("tennis", Field("Tags")), {"cy@x.io"}),
        (EQ(RECORD_ID(), people["bob@x.io"]), {"bob@x.io"}),
        (IS_AFTER(LAST_MODIFIED_TIME(), past), set(people)),
        (IS_AFTER(CREATED_TIME(), datetime(2999, 1, 1, tzinfo=UTC)), set()),
        (EQ(Field("Since"), datetime(2020, 1, 1, tzinfo=UTC).date()), {"bob@x.io"}),
        (IF(GT(Field("Visits"), 10), 1, 0), {"ann@x.io"}),
        ("{VIP}", {"ann@x.io"}),
        ("Visits * 2 > 5", {"ann@x.io", "bob@x.io"}),
        ("FIND('Hara', {Name} & '') > 0", {"ann@x.io"}),
    ]
    for formula, expected in cases:
        text = formula if isinstance(formula, str) else to_formula_str(formula)
        assert {r["fields"]["Email"] for r in clients.all(formula=text)} == expected, text


def test_bad_formulas_are_refused(clients: Table, people: dict[str, str]) -> None:
    for text, detail in [("{Nope}=1", "Unknown field names: Nope"), ("AND({Visits}>1", "Invalid formula"),
                         ("FOO({Visits})", "Invalid formula"), ("{Visits}=='x'", "Invalid formula")]:
        with pytest.raises(requests.HTTPError) as exc:
            clients.all(formula=text)
        status, body = http_error(exc)
        assert status == 422 and body["error"]["type"] == "INVALID_FILTER_BY_FORMULA", text
        assert detail in body["error"]["message"]


def test_sort_fields_and_field_ids(clients: Table, people: dict[str, str]) -> None:
    rows = clients.all(sort=["-Visits"], fields=["Email", "Visits"])
    assert [r["fields"]["Email"] for r in rows] == ["ann@x.io", "bob@x.io", "cy@x.io"]
    assert all(set(r["fields"]) <= {"Email", "Visits"} for r in rows)
    by_id = clients.all(use_field_ids=True, max_records=1)[0]["fields"]
    assert all(key.startswith("fld") for key in by_id)
    assert clients.all(sort=["Name"])[0]["fields"]["Email"] == "cy@x.io"  # blanks sort first
    with pytest.raises(requests.HTTPError) as exc:
        clients.all(sort=["Nope"])
    assert http_error(exc)[1]["error"]["type"] == "UNKNOWN_FIELD_NAME"


def test_error_bodies(standin: ServerHandle, api: Api, clients: Table) -> None:
    base = f"{standin.url}/v0/{DEFAULT_BASE}"
    for headers in ({}, {"Authorization": "Bearer patWrong.0000"}):
        resp = requests.get(f"{base}/Clients", headers=headers, timeout=10)
        assert (resp.status_code, resp.json()) == (
            401, {"error": {"type": "AUTHENTICATION_REQUIRED", "message": "Authentication required"}})
    with pytest.raises(requests.HTTPError) as exc:
        api.table(DEFAULT_BASE, "Nope").all()
    status, body = http_error(exc)
    assert status == 403 and body["error"]["type"] == "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND"
    with pytest.raises(requests.HTTPError) as exc:
        api.table("appNoSuchBase0000", "Clients").all()
    assert http_error(exc)[0] == 403
    resp = api.session.get(f"{standin.url}/v0/no/such/route/here", timeout=10)
    assert (resp.status_code, resp.json()) == (404, {"error": "NOT_FOUND"})


def test_rate_limit_then_penalty_per_base() -> None:
    standin = AirtableStandIn(penalty_seconds=1.0, bases={DEFAULT_BASE: {"name": "a"}, "appOtherBase00001": {}})
    handle = serve(standin)
    try:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {DEFAULT_TOKEN}"
        schema = f"{handle.url}/v0/meta/bases/{DEFAULT_BASE}/tables"
        statuses = [session.get(schema, timeout=10).status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]
        limited = session.get(f"{handle.url}/v0/{DEFAULT_BASE}/Anything", timeout=10)
        assert limited.status_code == 429  # the whole base is penalised, records API included
        assert limited.json() == {"error": {"type": "RATE_LIMIT_REACHED",
                                            "message": "Rate limit exceeded. Please try again later"}}
        other = session.get(f"{handle.url}/v0/meta/bases/appOtherBase00001/tables", timeout=10)
        assert other.status_code == 200  # other bases have their own quota
        wait_for(lambda: session.get(schema, timeout=10).status_code == 200, timeout=10, interval=0.25,
                 what="the 1 s penalty to end")
    finally:
        handle.stop()


def test_state_persists_across_restart(tmp_path: Path) -> None:
    handle = serve(AirtableStandIn(data_dir=str(tmp_path), rate_limit=10_000))
    api = Api(DEFAULT_TOKEN, endpoint_url=handle.url, retry_strategy=None)
    table = api.base(DEFAULT_BASE).create_table("Clients", FIELDS[:3])
    made = table.batch_create([{"Email": f"p{i}@x.io"} for i in range(3)])
    hook = api.base(DEFAULT_BASE).add_webhook("http://127.0.0.1:9/none", {"options": {"filters": {
        "dataTypes": ["tableData"]}}})
    handle.stop()
    assert (tmp_path / "airtable.json").exists()
    again = serve(AirtableStandIn(data_dir=str(tmp_path), rate_limit=10_000))
    try:
        api = Api(DEFAULT_TOKEN, endpoint_url=again.url, retry_strategy=None)
        assert [r["id"] for r in api.table(DEFAULT_BASE, "Clients").all()] == [r["id"] for r in made]
        assert [w.id for w in api.base(DEFAULT_BASE).webhooks()] == [hook.id]
    finally:
        again.stop()


def test_webhook_ping_is_signed_and_payloads_list_by_cursor(
    standin: ServerHandle, api: Api, clients: Table, ping_receiver: PingReceiver
) -> None:
    base = api.base(DEFAULT_BASE)
    spec = {"options": {"filters": {"dataTypes": ["tableData"], "recordChangeScope": clients.schema().id},
                        "includes": {"includePreviousCellValues": True}}}
    created = base.add_webhook(ping_receiver.url, spec)
    record = clients.create({"Email": "w@x.io", "Visits": 1})
    clients.update(record["id"], {"Visits": 2})
    clients.delete(record["id"])
    assert admin(standin, "/_sandbox/webhooks/flush?timeout=10", {})["idle"]
    assert len(ping_receiver.pings) == 3
    headers, body = ping_receiver.pings[0]
    secret = base64.b64decode(created.mac_secret_base64)
    assert headers["X-Airtable-Content-MAC"] == "hmac-sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    ping = WebhookNotification.from_request(body.decode(), headers["X-Airtable-Content-MAC"],
                                            created.mac_secret_base64)
    assert (ping.base.id, ping.webhook.id) == (DEFAULT_BASE, created.id)

    hook = base.webhook(created.id)
    assert hook.cursor_for_next_payload == 4
    payloads = list(hook.payloads())
    assert [p.cursor for p in payloads] == [1, 2, 3]
    numbers = [p.base_transaction_number for p in payloads]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3
    email_id = clients.schema().field("Email").id
    visits_id = clients.schema().field("Visits").id
    table_id = clients.schema().id
    born = payloads[0].changed_tables_by_id[table_id].created_records_by_id[record["id"]]
    assert born.cell_values_by_field_id == {email_id: "w@x.io", visits_id: 1}
    change = payloads[1].changed_tables_by_id[table_id].changed_records_by_id[record["id"]]
    assert change.current.cell_values_by_field_id == {visits_id: 2}
    assert change.previous is not None and change.previous.cell_values_by_field_id == {visits_id: 1}
    assert payloads[2].changed_tables_by_id[table_id].destroyed_record_ids == [record["id"]]
    assert [p.cursor for p in hook.payloads(cursor=3)] == [3]
    page = api.get(f"{base.urls.webhooks}/{created.id}/payloads", params={"cursor": 1, "limit": 2})
    assert (len(page["payloads"]), page["cursor"], page["mightHaveMore"]) == (2, 3, True)


def test_webhook_lifecycle(api: Api, clients: Table) -> None:
    base = api.base(DEFAULT_BASE)
    created = base.add_webhook("http://127.0.0.1:9/none", {"options": {"filters": {"dataTypes": ["tableData"]}}})
    hook = base.webhook(created.id)
    hook.extend_expiration()
    assert hook.expiration_time is not None
    hook.disable_notifications()
    assert base.webhook(created.id).are_notifications_enabled is False
    hook.delete()
    assert base.webhooks() == []
    with pytest.raises(requests.HTTPError) as exc:
        base.add_webhook("http://127.0.0.1:9/x", {"options": {"filters": {"dataTypes": ["tableData"],
                                                                            "recordChangeScope": "tblNope"}}})
    assert http_error(exc)[0] == 422


def test_injected_faults(standin: ServerHandle, clients: Table, ping_receiver: PingReceiver) -> None:
    admin(standin, "/_sandbox/faults", {"error_rate": 1.0, "error_statuses": [500, 503]})
    for _ in range(4):
        with pytest.raises(requests.HTTPError) as exc:
            clients.all()
        status, body = http_error(exc)
        assert status in (500, 503) and body["error"]["type"] in ("SERVER_ERROR", "RETRIABLE_ERROR")
    admin(standin, "/_sandbox/faults", {"error_rate": 0.0, "latency_ms": 30, "webhook_duplicate_rate": 1.0})
    base = clients.base
    base.add_webhook(ping_receiver.url, {"options": {"filters": {"dataTypes": ["tableData"]}}})
    clients.create({"Email": "d@x.io"})
    assert admin(standin, "/_sandbox/webhooks/flush?timeout=10", {})["idle"]
    assert len(ping_receiver.pings) == 2 and ping_receiver.pings[0][1] == ping_receiver.pings[1][1]
    stats = admin(standin, "/_sandbox/stats")
    assert stats["webhooks"]["duplicated"] == 1
    assert stats["statuses"].get("500", 0) + stats["statuses"].get("503", 0) == 4


def test_exports_point_at_the_stand_in(standin: ServerHandle) -> None:
    env = exports(standin.url, standin.standin)  # type: ignore[arg-type]
    assert env == {"AIRTABLE_ENDPOINT_URL": standin.url, "AIRTABLE_API_KEY": DEFAULT_TOKEN,
                   "AIRTABLE_BASE_ID": DEFAULT_BASE}
    api = Api(env["AIRTABLE_API_KEY"], endpoint_url=env["AIRTABLE_ENDPOINT_URL"], retry_strategy=None)
    assert api.whoami()["id"].startswith("usr")
