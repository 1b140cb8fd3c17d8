"""The HubSpot connector over the wire: hubspot-api-client → loopback HTTP → the HubSpot stand-in,
with the quota governors on a real Redis. Request counts come from the stand-in's /_sandbox/stats.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from typing import Any

import pytest
import redis

from connectors.base import Collection, Connector, FieldSpec, Write
from connectors.hubspot import HubSpotConnector, connect
from connectors.hubspot_admin import Stage
from connectors.retry import RetryPolicy
from hub.errors import ConfigError, MissingSetting, PermanentError, TransientError
from hub.sandbox.common import ServerHandle
from hub.sandbox.hubspot import HubSpotStandIn
from hub.settings import Settings
from tests.support.hubspot import (  # noqa: F401
    connector_for,
    hubspot,
    hubspot_standin,
    running_hubspot,
    sdk,
    set_faults,
    stats,
)
from tests.support.procs import free_port

CONTACTS, COMPANIES, DEALS, TICKETS = (Collection(n) for n in ("contacts", "companies", "deals", "tickets"))


def requests_to(handle: ServerHandle, route: str) -> int:
    return int(stats(handle)["requests"].get(route, 0))


def statuses(handle: ServerHandle) -> dict[str, int]:
    found: dict[str, int] = stats(handle)["statuses"]
    return found


def test_it_is_a_connector(hubspot: HubSpotConnector) -> None:  # noqa: F811
    assert isinstance(hubspot, Connector) and hubspot.system == "hubspot"


def test_crud_round_trip(hubspot: HubSpotConnector) -> None:  # noqa: F811
    made = hubspot.upsert_many(
        CONTACTS,
        [
            Write({"email": "ann@example.com", "firstname": "Ann"}),
            Write({"email": "ben@example.com", "firstname": "Ben"}),
        ],
    )
    assert [r.fields["email"] for r in made] == ["ann@example.com", "ben@example.com"]
    assert made[0].created_at is not None and made[0].updated_at is not None
    ann = hubspot.get(CONTACTS, made[0].id)
    assert ann is not None and ann.fields["firstname"] == "Ann" and "lifecyclestage" in ann.fields

    [changed] = hubspot.upsert_many(CONTACTS, [Write({"firstname": "Anna", "phone": None}, id=made[0].id)])
    assert changed.id == made[0].id and changed.fields["firstname"] == "Anna"
    got = hubspot.get_many(CONTACTS, [made[1].id, "999999", made[0].id])
    assert [r.id for r in got] == [made[1].id, made[0].id]  # requested order, missing left out

    hubspot.delete(CONTACTS, [made[0].id])
    assert hubspot.get(CONTACTS, made[0].id) is None


def test_identity_match_updates_or_creates(hubspot: HubSpotConnector) -> None:  # noqa: F811
    [old] = hubspot.upsert_many(CONTACTS, [Write({"email": "cara@example.com", "firstname": "Cara"})])
    out = hubspot.upsert_many(
        CONTACTS,
        [
            Write({"email": "Cara@Example.com", "lastname": "Lee"}, match="email"),
            Write({"email": "dan@example.com", "firstname": "Dan"}, match="email"),
        ],
    )
    assert out[0].id == old.id and out[0].fields["lastname"] == "Lee"
    assert out[1].id != old.id and out[1].fields["firstname"] == "Dan"
    assert [r.id for r in hubspot.find(CONTACTS, "email", "CARA@example.com")] == [old.id]

    with pytest.raises(PermanentError) as exc:
        hubspot.upsert_many(COMPANIES, [Write({"name": "Acme"}, match="name")])
    assert (exc.value.system, exc.value.obj, exc.value.field, exc.value.status) == ("hubspot", "companies", "name", 400)
    with pytest.raises(PermanentError) as exc:
        hubspot.upsert_many(CONTACTS, [Write({"firstname": "No mail"}, match="email")])
    assert exc.value.field == "email"


def test_250_writes_are_exactly_3_batch_requests_and_come_back_in_order(
    hubspot: HubSpotConnector,  # noqa: F811
    hubspot_standin: ServerHandle,  # noqa: F811
) -> None:
    writes = [Write({"email": f"n{i}@example.com", "firstname": f"N{i}"}) for i in range(250)]
    made = hubspot.upsert_many(CONTACTS, writes)
    assert [r.fields["email"] for r in made] == [w.fields["email"] for w in writes]  # HubSpot shuffles; we don't
    assert requests_to(hubspot_standin, "POST /crm/v3/objects/<otype>/batch/create") == 3
    updated = hubspot.upsert_many(CONTACTS, [Write({"lastname": "X"}, id=r.id) for r in made])
    assert [r.id for r in updated] == [r.id for r in made]
    assert requests_to(hubspot_standin, "POST /crm/v3/objects/<otype>/batch/update") == 3


def test_a_collection_naming_its_fields_reads_only_those_properties(hubspot: HubSpotConnector) -> None:  # noqa: F811
    [made] = hubspot.upsert_many(CONTACTS, [Write({"email": "cat@example.com", "firstname": "Cat", "city": "Lyon"})])
    narrow = Collection("contacts", fields=("email", "firstname"))
    [got] = hubspot.get_many(narrow, [made.id])
    assert got.fields["email"] == "cat@example.com" and got.fields["firstname"] == "Cat"
    assert "city" not in got.fields and "lifecyclestage" not in got.fields  # not asked for
    [everything] = hubspot.get_many(CONTACTS, [made.id])  # no fields named: every property
    assert everything.fields["city"] == "Lyon" and "lifecyclestage" in everything.fields
    assert [r.fields.get("city") for r in hubspot.iterate(narrow)] == [None]


def test_iterate_pages_over_260_records(hubspot: HubSpotConnector, hubspot_standin: ServerHandle) -> None:  # noqa: F811
    hubspot.upsert_many(DEALS, [Write({"dealname": f"D{i}", "amount": i % 3}) for i in range(260)])
    everything = list(hubspot.iterate(DEALS))
    assert len({r.id for r in everything}) == 260
    assert requests_to(hubspot_standin, "GET /crm/v3/objects/<otype>") == 3  # 100 + 100 + 60
    twos = list(hubspot.iterate(DEALS, where={"amount": 2}, page_size=30))
    assert len(twos) == 86 and {r.fields["amount"] for r in twos} == {"2"}
    assert requests_to(hubspot_standin, "POST /crm/v3/objects/<otype>/search") == 3  # 30 + 30 + 26


def test_iterate_is_lazy_page_by_page(hubspot: HubSpotConnector, hubspot_standin: ServerHandle) -> None:  # noqa: F811
    hubspot.upsert_many(COMPANIES, [Write({"name": f"C{i}"}) for i in range(150)])
    pages = iter(hubspot.iterate(COMPANIES))
    next(pages)
    assert requests_to(hubspot_standin, "GET /crm/v3/objects/<otype>") == 1


def test_changed_since_uses_the_modification_date(hubspot: HubSpotConnector) -> None:  # noqa: F811
    made = hubspot.upsert_many(CONTACTS, [Write({"email": f"m{i}@example.com"}) for i in range(6)])
    cut = max(r.updated_at for r in made if r.updated_at)
    time.sleep(0.01)  # ordering only: the updates below must land in a later millisecond
    hubspot.upsert_many(CONTACTS, [Write({"firstname": "Changed"}, id=r.id) for r in made[:3]])
    later = list(hubspot.iterate(CONTACTS, changed_since=cut))
    assert sorted(r.id for r in later) == sorted(r.id for r in made[:3])


def test_changed_since_pages_past_the_search_cap_in_windows(redis_conn: redis.Redis) -> None:
    with running_hubspot(search_max_results=30, search_rate=1000) as handle:
        conn = connector_for(handle, redis_conn, search_cap=30, search_rate=1000)
        for start in range(0, 80, 10):  # spread modification times: at most 10 share a millisecond
            conn.upsert_many(COMPANIES, [Write({"name": f"W{i}"}) for i in range(start, start + 10)])
            time.sleep(0.002)
        seen = [r.id for r in conn.iterate(COMPANIES, changed_since=datetime(2000, 1, 1, tzinfo=UTC), page_size=10)]
        assert len(seen) == len(set(seen)) == 80
        assert "400" not in statuses(handle)  # never asked past the cap


def test_permanent_errors_name_object_and_property(hubspot: HubSpotConnector, hubspot_standin: ServerHandle) -> None:  # noqa: F811
    with pytest.raises(PermanentError) as exc:
        hubspot.upsert_many(CONTACTS, [Write({"lifecyclestage": "vip"})])
    err = exc.value
    assert (err.system, err.obj, err.field, err.status) == ("hubspot", "contacts", "lifecyclestage", 400)
    assert str(err).startswith("hubspot/contacts/lifecyclestage: HTTP 400") and "INVALID_OPTION" in str(err)
    with pytest.raises(PermanentError) as exc:
        hubspot.upsert_many(TICKETS, [Write({"subject": "S", "hs_pipeline_stage": "77"})])
    assert (exc.value.obj, exc.value.field) == ("tickets", "hs_pipeline_stage")
    hubspot.upsert_many(CONTACTS, [Write({"email": "once@example.com"})])
    with pytest.raises(PermanentError) as exc:
        hubspot.upsert_many(CONTACTS, [Write({"email": "once@example.com"})])
    assert exc.value.status == 409 and "Contact already exists" in str(exc.value)
    assert statuses(hubspot_standin)["400"] == 2  # permanent errors are not retried


def test_transient_500_and_503_are_retried(hubspot: HubSpotConnector, hubspot_standin: ServerHandle) -> None:  # noqa: F811
    set_faults(hubspot_standin, error_rate=0.5, error_statuses=[500, 503], seed=3)
    hubspot.policy = RetryPolicy(attempts=10, base_delay=0.01, max_delay=0.05, jitter=0.1)
    for i in range(8):
        hubspot.upsert_many(COMPANIES, [Write({"name": f"R{i}"})])
    set_faults(hubspot_standin, error_rate=0.0)
    assert sorted(r.fields["name"] for r in hubspot.iterate(COMPANIES)) == [f"R{i}" for i in range(8)]
    seen = statuses(hubspot_standin)
    assert seen.get("500", 0) > 0 and seen.get("503", 0) > 0 and seen["201"] == 8


def test_timeouts_are_transient(redis_conn: redis.Redis) -> None:
    with running_hubspot() as handle:
        conn = connector_for(handle, redis_conn, timeout=0.2, policy=RetryPolicy(attempts=2, base_delay=0.01))
        set_faults(handle, timeout_rate=1.0, timeout_seconds=0.6)
        with pytest.raises(TransientError):
            conn.get_many(CONTACTS, ["1"])
        set_faults(handle, timeout_rate=0.0)


def test_unreachable_host_is_transient(redis_conn: redis.Redis) -> None:
    conn = HubSpotConnector(
        "pat-na1-unused",
        redis_conn,
        host=f"http://127.0.0.1:{free_port()}",
        properties={"contacts": ["email"]},
        policy=RetryPolicy(attempts=2, base_delay=0.01),
    )
    with pytest.raises(TransientError) as exc:
        conn.get_many(CONTACTS, ["1"])
    assert "network error" in str(exc.value)


def test_429_is_honoured_and_penalises_the_shared_quota(redis_conn: redis.Redis) -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    with running_hubspot(rate_limit=4, rate_interval=1.0) as handle:
        # The connector believes in 50/s, so the stand-in's 4/s window will answer 429.
        conn = connector_for(
            handle,
            redis_conn,
            rate=50,
            per=1.0,
            properties={"contacts": ["email"]},
            policy=RetryPolicy(attempts=6, base_delay=0.01, jitter=0.0, sleep=sleep),
        )
        for _ in range(8):
            assert conn.get_many(CONTACTS, ["1"]) == []
        assert statuses(handle).get("429", 0) >= 1 and statuses(handle)["207"] == 8
        assert waits and min(waits) >= 1.0  # waited the window the interval header names, not a backoff
        assert float(redis_conn.get(conn.governor.key) or 0) > 0  # the shared slot booking was pushed back


def test_governor_keeps_under_the_limits(redis_conn: redis.Redis) -> None:
    with running_hubspot(rate_limit=10, rate_interval=1.0) as handle:
        # Searches at 3/s against the stand-in's 4 in any second: the default 4/s leaves 100 ms of
        # slack, less than a request may lag behind its booked slot on a loaded machine.
        conn = connector_for(handle, redis_conn, rate=5, per=1.0, search_rate=3, properties={"contacts": ["email"]})
        for _ in range(7):
            conn.get_many(CONTACTS, ["1"])
        for i in range(6):  # searches also book the search quota (ungoverned, 6 at once would be refused)
            conn.find(CONTACTS, "email", f"x{i}@example.com")
        assert "429" not in statuses(handle)


def test_ensure_schema_creates_missing_properties_once(
    hubspot: HubSpotConnector,  # noqa: F811
    hubspot_standin: ServerHandle,  # noqa: F811
) -> None:
    fields = [
        FieldSpec("tb_level", "enum", options=("beginner", "pro")),
        FieldSpec("score", "number"),
        FieldSpec("consent", "bool"),
        FieldSpec("first_upload", "date"),
        FieldSpec("seen_at", "datetime"),
        FieldSpec("notes_txt", "text"),
        FieldSpec("email", "email"),
    ]
    created = hubspot.ensure_schema(CONTACTS, fields)
    assert created == ["tb_level", "score", "consent", "first_upload", "seen_at", "notes_txt"]
    assert hubspot.ensure_schema(CONTACTS, fields) == []
    groups = {p.name: p.group_name for p in sdk(hubspot_standin).crm.properties.core_api.get_all("contacts").results}
    assert groups["tb_level"] == "hub" and groups["email"] == "contactinformation"
    [rec] = hubspot.upsert_many(
        CONTACTS,
        [
            Write(
                {
                    "email": "s@example.com",
                    "tb_level": "pro",
                    "score": 4.5,
                    "consent": True,
                    "first_upload": date(2024, 5, 1),
                    "seen_at": datetime(2024, 5, 1, 9, 30, tzinfo=UTC),
                }
            )
        ],
    )
    fetched = hubspot.get(CONTACTS, rec.id)
    assert fetched is not None
    assert {k: fetched.fields[k] for k in ("tb_level", "score", "consent", "first_upload", "seen_at")} == {
        "tb_level": "pro",
        "score": "4.5",
        "consent": "true",
        "first_upload": "2024-05-01",
        "seen_at": "2024-05-01T09:30:00.000Z",
    }
    with pytest.raises(PermanentError) as exc:
        hubspot.upsert_many(CONTACTS, [Write({"tb_level": "god"})])
    assert exc.value.field == "tb_level"


def test_bad_field_specs_fail_before_any_request(hubspot: HubSpotConnector, hubspot_standin: ServerHandle) -> None:  # noqa: F811
    for spec in (FieldSpec("Bad Name"), FieldSpec("x", "colour"), FieldSpec("e", "enum")):
        with pytest.raises(ConfigError):
            hubspot.ensure_schema(CONTACTS, [spec])
    assert stats(hubspot_standin)["requests"] == {}


def test_associate_links_records(hubspot: HubSpotConnector, hubspot_standin: ServerHandle) -> None:  # noqa: F811
    [contact] = hubspot.upsert_many(CONTACTS, [Write({"email": "as@example.com"})])
    [company] = hubspot.upsert_many(COMPANIES, [Write({"name": "Assoc"})])
    hubspot.associate("contacts", contact.id, "companies", company.id)
    listed = sdk(hubspot_standin).crm.associations.v4.basic_api.get_page("contacts", contact.id, "companies")
    assert [r.to_object_id for r in listed.results] == [company.id]
    with pytest.raises(PermanentError) as exc:
        hubspot.associate("contacts", contact.id, "companies", "424242")
    assert exc.value.status == 404


def test_ensure_pipeline_creates_then_completes(hubspot: HubSpotConnector) -> None:  # noqa: F811
    first = hubspot.ensure_pipeline(
        "tickets", "Video analysis", ["received", "analysis_started", Stage("closed", closed=True)]
    )
    assert list(first.stages) == ["received", "analysis_started", "closed"]
    again = hubspot.ensure_pipeline("tickets", "Video analysis", ["received", "review_pending"])
    assert again.id == first.id and again.stages["received"] == first.stages["received"]
    assert "review_pending" in again.stages
    [ticket] = hubspot.upsert_many(
        TICKETS,
        [
            Write(
                {"subject": "Match video", "hs_pipeline": first.id, "hs_pipeline_stage": again.stages["review_pending"]}
            )
        ],
    )
    assert ticket.fields["hs_pipeline_stage"] == again.stages["review_pending"]
    deals = hubspot.ensure_pipeline("deals", "Bookings", [Stage("quote", probability=0.3), Stage("won", closed=True)])
    assert len(deals.stages) == 2
    with pytest.raises(ConfigError):
        hubspot.ensure_pipeline("contacts", "Nope", ["a"])


def test_subscribe_sets_target_and_subscriptions_idempotently(
    hubspot: HubSpotConnector,  # noqa: F811
    hubspot_standin: ServerHandle,  # noqa: F811
) -> None:
    standin = hubspot_standin.standin
    assert isinstance(standin, HubSpotStandIn)
    events = ["contact.creation", "contact.propertyChange:email", "deal.deletion"]
    ids = hubspot.subscribe(standin.app_id, "http://127.0.0.1:9/webhooks/hubspot", events)
    assert hubspot.subscribe(standin.app_id, "http://127.0.0.1:9/webhooks/hubspot", events) == ids
    hooks = sdk(hubspot_standin, api_key=standin.developer_api_key).webhooks
    assert hooks.settings_api.get_all(standin.app_id).target_url == "http://127.0.0.1:9/webhooks/hubspot"
    listed = {(s.event_type, s.property_name) for s in hooks.subscriptions_api.get_all(standin.app_id).results}
    assert listed == {("contact.creation", None), ("contact.propertyChange", "email"), ("deal.deletion", None)}
    with pytest.raises(ConfigError):
        hubspot.subscribe(standin.app_id, "http://127.0.0.1:9/x", ["contact.propertyChange"])


def test_subscribe_needs_the_developer_key(hubspot_standin: ServerHandle, redis_conn: redis.Redis) -> None:  # noqa: F811
    conn = connector_for(hubspot_standin, redis_conn, developer_api_key=None)
    with pytest.raises(MissingSetting) as exc:
        conn.subscribe(1, "http://127.0.0.1:9/x", ["contact.creation"])
    assert "HUBSPOT_DEVELOPER_API_KEY" in str(exc.value)


def test_connect_reads_the_environment(hubspot_standin: ServerHandle, redis_conn: redis.Redis) -> None:  # noqa: F811
    standin = hubspot_standin.standin
    assert isinstance(standin, HubSpotStandIn)
    env: dict[str, Any] = {"HUBSPOT_ACCESS_TOKEN": standin.tokens[0], "HUBSPOT_HOST": hubspot_standin.url}
    conn = connect(Settings(env=env), redis_conn)
    assert conn.upsert_many(COMPANIES, [Write({"name": "Env"})])[0].fields["name"] == "Env"
    with pytest.raises(MissingSetting):
        connect(Settings(env={"HUBSPOT_HOST": hubspot_standin.url}), redis_conn)
    wrong = connect(Settings(env={**env, "HUBSPOT_ACCESS_TOKEN": "pat-na1-wrong"}), redis_conn)
    with pytest.raises(PermanentError) as exc:
        wrong.get_many(COMPANIES, ["1"])
    assert exc.value.status == 401
