"""The HubSpot stand-in, through hubspot-api-client's own APIs: every response shape the hub uses
must deserialise in the SDK (which checks required fields), and the HubSpot facts the hub relies
on are pinned here (object type ids, limits, error bodies, headers).

Search, associations, properties and pipelines are in test_hubspot_schema.py; webhook deliveries
and fault injection in test_hubspot_hooks.py.
"""

from __future__ import annotations

from typing import Any

import hubspot
import pytest
from hubspot.crm.objects import (
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchReadInputSimplePublicObjectId,
    SimplePublicObjectInput,
)
from hubspot.crm.properties import PropertyCreate

from hub.sandbox.common import ServerHandle
from hub.sandbox.hubspot import DEFAULT_TOKEN, HubSpotStandIn, exports
from tests.support.hubspot import (  # noqa: F401
    SDK_ERRORS,
    batch_create,
    create,
    error_body,
    hubspot_shared,
    hubspot_standin,
    nested_problems,
    reset,
    running_hubspot,
    sdk,
    search,
)


@pytest.fixture
def client(hubspot_shared: ServerHandle) -> hubspot.Client:  # noqa: F811
    reset(hubspot_shared)
    return sdk(hubspot_shared)


def error_of(exc: pytest.ExceptionInfo[Any]) -> dict[str, Any]:
    return error_body(exc.value)


# -- objects ----------------------------------------------------------------------------------------
def test_create_then_get_returns_defaults_or_asked_properties(client: hubspot.Client) -> None:
    made = create(client, "contacts", email="Ada@Example.COM", firstname="Ada")
    assert made.id.isdigit() and made.created_at is not None and made.updated_at is not None
    assert made.properties["email"] == "ada@example.com"  # HubSpot keeps emails lowercase
    assert made.properties["hs_object_id"] == made.id

    plain = client.crm.objects.basic_api.get_by_id("contacts", made.id)
    assert set(plain.properties) == {"createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"}
    asked = client.crm.objects.basic_api.get_by_id("contacts", made.id, properties=["phone", "email", "nope"])
    assert set(asked.properties) == {"phone", "email", "createdate", "lastmodifieddate", "hs_object_id"}
    assert asked.properties["phone"] is None and asked.archived is False


@pytest.mark.parametrize("alias", ["contacts", "contact", "0-1"])
def test_object_type_accepts_name_singular_and_type_id(client: hubspot.Client, alias: str) -> None:
    made = create(client, "contacts", email="x@example.com")
    assert client.crm.objects.basic_api.get_by_id(alias, made.id).id == made.id


def test_object_type_ids_of_the_six_types() -> None:
    from hub.sandbox.hubspot_schema import TYPES

    ids = {t: TYPES[t].type_id for t in TYPES}
    assert ids == {
        "contacts": "0-1",
        "companies": "0-2",
        "deals": "0-3",
        "tickets": "0-5",
        "tasks": "0-27",
        "notes": "0-46",
    }


def test_unknown_object_type_is_a_400(client: hubspot.Client) -> None:
    with pytest.raises(SDK_ERRORS) as exc:
        client.crm.objects.basic_api.get_page("widgets")
    assert exc.value.status == 400
    assert error_of(exc)["message"] == "Unable to infer object type from: widgets"


def test_update_archive_and_missing_record(client: hubspot.Client) -> None:
    made = create(client, "companies", name="Acme", domain="acme.test")
    updated = client.crm.objects.basic_api.update("companies", made.id, SimplePublicObjectInput({"name": "Acme SA"}))
    assert updated.properties["name"] == "Acme SA" and updated.updated_at >= made.updated_at
    client.crm.objects.basic_api.archive("companies", made.id)
    with pytest.raises(SDK_ERRORS) as exc:
        client.crm.objects.basic_api.get_by_id("companies", made.id)
    assert exc.value.status == 404 and not exc.value.body  # HubSpot's empty 404
    archived = client.crm.objects.basic_api.get_by_id("companies", made.id, archived=True)
    assert archived.archived is True and archived.archived_at is not None


def test_get_and_update_by_unique_id_property(client: hubspot.Client) -> None:
    made = create(client, "contacts", email="bob@example.com")
    found = client.crm.objects.basic_api.get_by_id("contacts", "BOB@example.com", id_property="email")
    assert found.id == made.id
    with pytest.raises(SDK_ERRORS) as exc:
        client.crm.objects.basic_api.get_by_id("contacts", "Bob", id_property="firstname")
    assert exc.value.status == 400 and "firstname is not a unique property" in error_of(exc)["message"]


def test_list_pages_with_after_cursor(client: hubspot.Client) -> None:
    batch_create(client, "contacts", [{"email": f"p{i}@example.com"} for i in range(25)])
    seen, after, pages = [], None, 0
    while True:
        page = client.crm.objects.basic_api.get_page("contacts", limit=10, after=after)
        pages += 1
        seen += [o.id for o in page.results]
        if page.paging is None:
            break
        after = page.paging.next.after
    assert pages == 3 and len(seen) == len(set(seen)) == 25
    with pytest.raises(SDK_ERRORS) as exc:
        client.crm.objects.basic_api.get_page("contacts", limit=101)
    assert exc.value.status == 400


# -- batch ------------------------------------------------------------------------------------------
def test_batch_of_101_inputs_is_refused_with_hubspots_message(client: hubspot.Client) -> None:
    with pytest.raises(SDK_ERRORS) as exc:
        batch_create(client, "contacts", [{"firstname": f"n{i}"} for i in range(101)])
    body = error_of(exc)
    assert exc.value.status == 400 and body["category"] == "VALIDATION_ERROR"
    assert body["message"] == (
        "The maximum number of inputs supported in a batch is 100. Please reduce the number of items and try again"
    )
    assert client.crm.objects.basic_api.get_page("contacts").results == []
    assert len(batch_create(client, "contacts", [{"firstname": f"n{i}"} for i in range(100)]).results) == 100


def test_batch_results_carry_trace_ids_and_read_reports_missing(client: hubspot.Client) -> None:
    body = BatchInputSimplePublicObjectBatchInputForCreate(
        inputs=[{"properties": {"dealname": f"d{i}"}, "objectWriteTraceId": f"t{i}"} for i in range(5)]
    )
    made = client.crm.objects.batch_api.create("deals", body)
    assert {r.object_write_trace_id: r.properties["dealname"] for r in made.results} == {
        f"t{i}": f"d{i}" for i in range(5)
    }
    ids = [r.id for r in made.results]
    read = client.crm.objects.batch_api.read(
        "deals",
        BatchReadInputSimplePublicObjectId(
            inputs=[{"id": i} for i in [*ids, "999999"]], properties=["dealname"], properties_with_history=[]
        ),
    )
    assert sorted(r.id for r in read.results) == sorted(ids)
    assert read.num_errors == 1 and read.errors[0].category == "OBJECT_NOT_FOUND"
    assert read.errors[0].context == {"ids": ["999999"]}


def test_batch_upsert_by_email_creates_or_updates(client: hubspot.Client) -> None:
    old = create(client, "contacts", email="old@example.com", firstname="Old")
    body = BatchInputSimplePublicObjectBatchInputUpsert(
        inputs=[
            {"id": "OLD@example.com", "idProperty": "email", "properties": {"firstname": "Renamed"}},
            {"id": "new@example.com", "idProperty": "email", "properties": {"firstname": "New"}},
        ]
    )
    done = {r.properties["email"]: r for r in client.crm.objects.batch_api.upsert("contacts", body).results}
    assert done["old@example.com"].id == old.id and done["old@example.com"].new is False
    assert done["new@example.com"].new is True and done["new@example.com"].properties["firstname"] == "New"
    bad = BatchInputSimplePublicObjectBatchInputUpsert(inputs=[{"id": "Acme", "idProperty": "name", "properties": {}}])
    with pytest.raises(SDK_ERRORS) as exc:
        client.crm.objects.batch_api.upsert("companies", bad)
    assert exc.value.status == 400 and "name is not a unique property" in error_of(exc)["message"]


def test_duplicate_email_is_a_409_conflict(client: hubspot.Client) -> None:
    first = create(client, "contacts", email="dup@example.com")
    with pytest.raises(SDK_ERRORS) as exc:
        create(client, "contacts", email="DUP@example.com")
    body = error_of(exc)
    assert exc.value.status == 409 and body["category"] == "CONFLICT"
    assert body["message"] == f"Contact already exists. Existing ID: {first.id}"
    with pytest.raises(SDK_ERRORS) as exc2:
        batch_create(client, "contacts", [{"email": "a@example.com"}, {"email": "a@example.com"}])
    assert exc2.value.status == 409


def test_bad_values_name_the_property_and_change_nothing(client: hubspot.Client) -> None:
    with pytest.raises(SDK_ERRORS) as exc:
        batch_create(client, "contacts", [{"email": "ok@example.com"}, {"favourite_colour": "blue"}])
    body = error_of(exc)
    assert exc.value.status == 400 and body["category"] == "VALIDATION_ERROR" and body["correlationId"]
    [p] = nested_problems(body)
    assert (p["error"], p["name"], p["message"]) == (
        "PROPERTY_DOESNT_EXIST",
        "favourite_colour",
        'Property "favourite_colour" does not exist',
    )
    assert client.crm.objects.basic_api.get_page("contacts").results == []

    cases = [
        ({"lifecyclestage": "vip"}, "INVALID_OPTION"),
        ({"hs_object_id": "5"}, "READ_ONLY_VALUE"),
        ({"email": "not-an-email"}, "INVALID_EMAIL"),
    ]
    for props, code in cases:
        with pytest.raises(SDK_ERRORS) as exc:
            create(client, "contacts", **props)
        [p] = nested_problems(error_of(exc))
        assert (p["error"], p["name"]) == (code, next(iter(props)))
    with pytest.raises(SDK_ERRORS) as exc:
        create(client, "deals", dealname="x", amount="lots")
    assert nested_problems(error_of(exc))[0]["error"] == "INVALID_FLOAT"


# -- auth, limits, errors ---------------------------------------------------------------------------
def test_bad_token_is_a_401_with_hubspots_body(hubspot_standin: ServerHandle) -> None:  # noqa: F811
    with pytest.raises(SDK_ERRORS) as exc:
        sdk(hubspot_standin, "pat-na1-00000000-0000-0000-0000-000000000000").crm.objects.basic_api.get_page("contacts")
    body = error_of(exc)
    assert exc.value.status == 401 and body["category"] == "INVALID_AUTHENTICATION"
    assert body["message"].startswith("Authentication credentials not found")


def test_rate_limit_headers_then_429_with_rate_limit_body() -> None:
    with running_hubspot(rate_limit=3, rate_interval=60.0, daily_limit=1000) as handle:
        api = sdk(handle).crm.objects.basic_api
        remaining = []
        for _ in range(3):
            _, _, headers = api.get_page_with_http_info("contacts")
            remaining.append(headers["X-HubSpot-RateLimit-Remaining"])
        assert remaining == ["2", "1", "0"]
        assert (headers["X-HubSpot-RateLimit-Max"], headers["X-HubSpot-RateLimit-Interval-Milliseconds"]) == (
            "3",
            "60000",
        )
        assert (headers["X-HubSpot-RateLimit-Daily"], headers["X-HubSpot-RateLimit-Daily-Remaining"]) == ("1000", "997")
        with pytest.raises(SDK_ERRORS) as exc:
            api.get_page("contacts")
        body = error_of(exc)
        assert exc.value.status == 429 and exc.value.headers["X-HubSpot-RateLimit-Remaining"] == "0"
        assert (body["errorType"], body["policyName"]) == ("RATE_LIMIT", "TEN_SECONDLY_ROLLING")
        assert body["message"] == "You have reached your ten_secondly_rolling limit."


def test_search_has_its_own_per_second_limit() -> None:
    with running_hubspot(search_rate=1) as handle:
        client = sdk(handle)
        policies = []
        for _ in range(10):  # bounded: ten searches; a limit of 1/s is hit long before
            try:
                search(client, "contacts")
            except SDK_ERRORS as exc:
                policies.append(error_body(exc)["policyName"])
                break
        assert policies == ["SECONDLY"]
        assert client.crm.objects.basic_api.get_page("contacts").results == []  # other calls still pass


def test_unknown_route_and_bad_json_use_hubspots_error_shape(hubspot_standin: ServerHandle) -> None:  # noqa: F811
    import requests

    auth = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
    missing = requests.get(f"{hubspot_standin.url}/crm/v3/nothing", headers=auth, timeout=5)
    assert missing.status_code == 404 and set(missing.json()) >= {"status", "message", "correlationId", "category"}
    bad = requests.post(f"{hubspot_standin.url}/crm/v3/objects/contacts", data="{", headers=auth, timeout=5)
    assert bad.status_code == 400 and bad.json()["category"] == "VALIDATION_ERROR"


# -- persistence and exports ------------------------------------------------------------------------
def test_state_survives_a_restart(tmp_path: Any) -> None:
    with running_hubspot(data_dir=str(tmp_path)) as handle:
        client = sdk(handle)
        client.crm.properties.core_api.create(
            "contacts",
            PropertyCreate(
                name="vip", label="VIP", type="bool", field_type="booleancheckbox", group_name="contactinformation"
            ),
        )
        kept = create(client, "contacts", email="keep@example.com", vip="true")
    with running_hubspot(data_dir=str(tmp_path)) as handle:
        client = sdk(handle)
        again = client.crm.objects.basic_api.get_by_id("contacts", kept.id, properties=["vip"])
        assert again.properties["vip"] == "true"
        assert create(client, "contacts", email="next@example.com").id != kept.id


def test_exports_name_the_settings(hubspot_standin: ServerHandle) -> None:  # noqa: F811
    standin = hubspot_standin.standin
    assert isinstance(standin, HubSpotStandIn)
    env = exports(hubspot_standin.url, standin)
    assert env["HUBSPOT_HOST"] == hubspot_standin.url and env["HUBSPOT_ACCESS_TOKEN"].startswith("pat-na1-")
    assert set(env) >= {"HUBSPOT_CLIENT_SECRET", "HUBSPOT_APP_ID", "HUBSPOT_PORTAL_ID"}
