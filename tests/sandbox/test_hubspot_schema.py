"""The HubSpot stand-in's search, associations v4, properties and pipelines, through
hubspot-api-client's own APIs, with the HubSpot facts they rely on pinned (operators and limits,
association type ids, default pipelines and stage metadata).
"""

from __future__ import annotations

from typing import Any

import hubspot
import pytest
from hubspot.crm.objects import (
    BatchInputSimplePublicObjectBatchInputUpsert,
    PublicObjectSearchRequest,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.pipelines import PipelineInput, PipelineStageInput
from hubspot.crm.properties import OptionInput, PropertyCreate, PropertyGroupCreate

from hub.sandbox.common import ServerHandle
from tests.support.hubspot import (  # noqa: F401
    SDK_ERRORS,
    batch_create,
    create,
    error_body,
    hubspot_shared,
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


# -- search -----------------------------------------------------------------------------------------
@pytest.fixture
def deals(client: hubspot.Client) -> dict[str, str]:
    rows = [
        {
            "dealname": "Alpha video pack",
            "amount": "100",
            "closedate": "2024-01-10T00:00:00Z",
            "dealtype": "newbusiness",
        },
        {"dealname": "Beta", "amount": "250.5", "closedate": "2024-02-10T12:00:00Z"},
        {"dealname": "Gamma video", "amount": "900", "closedate": "1709251200000", "dealtype": "existingbusiness"},
        {"dealname": "delta"},
    ]
    made = batch_create(client, "deals", rows).results
    return {r.properties["dealname"]: r.id for r in made}


def names(result: Any) -> set[str]:
    return {r.properties["dealname"] for r in result.results}


def test_search_operators(client: hubspot.Client, deals: dict[str, str]) -> None:
    f = lambda op, **kw: [{"propertyName": kw.pop("prop", "amount"), "operator": op, **kw}]  # noqa: E731
    assert names(search(client, "deals", f("EQ", value="100"))) == {"Alpha video pack"}
    assert names(search(client, "deals", f("NEQ", value="100"))) == {"Beta", "Gamma video", "delta"}
    assert names(search(client, "deals", f("LT", value="250.5"))) == {"Alpha video pack"}
    assert names(search(client, "deals", f("LTE", value="250.5"))) == {"Alpha video pack", "Beta"}
    assert names(search(client, "deals", f("GT", value="250.5"))) == {"Gamma video"}
    assert names(search(client, "deals", f("GTE", value="250.5"))) == {"Beta", "Gamma video"}
    between = f("BETWEEN", prop="closedate", value="2024-02-01", highValue=str(1709251200000))
    assert names(search(client, "deals", between)) == {"Beta", "Gamma video"}
    assert names(search(client, "deals", f("IN", prop="dealname", values=["beta", "delta"]))) == {"Beta", "delta"}
    assert names(search(client, "deals", f("IN", prop="dealname", values=["Beta"]))) == set()  # lowercase only
    assert names(search(client, "deals", f("NOT_IN", prop="dealtype", values=["newbusiness"]))) == {
        "Beta",
        "Gamma video",
        "delta",
    }
    assert names(search(client, "deals", f("HAS_PROPERTY", prop="dealtype"))) == {"Alpha video pack", "Gamma video"}
    assert names(search(client, "deals", f("NOT_HAS_PROPERTY", prop="amount"))) == {"delta"}
    assert names(search(client, "deals", f("CONTAINS_TOKEN", prop="dealname", value="video"))) == {
        "Alpha video pack",
        "Gamma video",
    }
    assert names(search(client, "deals", f("CONTAINS_TOKEN", prop="dealname", value="gam*"))) == {"Gamma video"}
    either = search(client, "deals", f("EQ", value="100"), f("EQ", prop="dealname", value="DELTA"))
    assert names(either) == {"Alpha video pack", "delta"}  # groups OR, string EQ ignores case


def test_search_sorts_pages_and_counts(client: hubspot.Client, deals: dict[str, str]) -> None:
    first = search(
        client, "deals", sorts=[{"propertyName": "amount", "direction": "DESCENDING"}], limit=2, properties=["amount"]
    )
    assert first.total == 4 and [r.properties["amount"] for r in first.results] == ["900", "250.5"]
    assert set(first.results[0].properties) == {"amount", "createdate", "hs_lastmodifieddate", "hs_object_id"}
    rest = search(
        client,
        "deals",
        sorts=[{"propertyName": "amount", "direction": "DESCENDING"}],
        limit=2,
        after=first.paging.next.after,
    )
    assert [r.properties.get("amount") for r in rest.results] == ["100", None] and rest.paging is None


def test_search_email_is_case_insensitive_and_contacts_keep_lastmodifieddate(client: hubspot.Client) -> None:
    made = create(client, "contacts", email="carol@example.com")
    hit = search(client, "contacts", [{"propertyName": "email", "operator": "EQ", "value": "CAROL@Example.com"}])
    assert [r.id for r in hit.results] == [made.id]
    since = [{"propertyName": "lastmodifieddate", "operator": "GT", "value": "0"}]
    assert search(client, "contacts", since).total == 1
    # hs_lastmodifieddate exists on contacts but is not kept: HubSpot silently finds nothing.
    assert (
        search(client, "contacts", [{"propertyName": "hs_lastmodifieddate", "operator": "GT", "value": "0"}]).total == 0
    )


def test_search_limits(client: hubspot.Client) -> None:
    one = [{"propertyName": "dealname", "operator": "HAS_PROPERTY"}]
    bad_requests: list[dict[str, Any]] = [
        {"limit": 201},
        {"filter_groups": [{"filters": one}] * 6},
        {"filter_groups": [{"filters": one * 11}]},
        {"filter_groups": [{"filters": one * 9}] * 3},  # 27 filters in all
        {"filter_groups": [{"filters": [{"propertyName": "nope", "operator": "HAS_PROPERTY"}]}]},
    ]
    for extra in bad_requests:
        with pytest.raises(SDK_ERRORS) as exc:
            client.crm.objects.search_api.do_search("deals", PublicObjectSearchRequest(**extra))
        assert exc.value.status == 400, extra
    assert search(client, "deals", limit=200).total == 0


def test_search_stops_at_its_result_cap() -> None:
    with running_hubspot(search_max_results=30) as handle:
        client = sdk(handle)
        batch_create(client, "companies", [{"name": f"c{i}"} for i in range(35)])
        page = search(client, "companies", limit=10, after="20")
        assert page.paging.next.after == "30"
        with pytest.raises(SDK_ERRORS) as exc:
            search(client, "companies", limit=10, after="30")
        assert exc.value.status == 400 and "limited to 30" in error_of(exc)["message"]


# -- associations -----------------------------------------------------------------------------------
def test_default_associations_use_hubspot_type_ids(client: hubspot.Client) -> None:
    contact, company = create(client, "contacts", email="e@example.com"), create(client, "companies", name="E")
    made = client.crm.associations.v4.basic_api.create_default("contact", contact.id, "company", company.id)
    specs = {(r._from.id, r.to.id): r.association_spec.association_type_id for r in made.results}
    assert specs == {(contact.id, company.id): 279, (company.id, contact.id): 280}
    listed = client.crm.associations.v4.basic_api.get_page("contacts", contact.id, "companies")
    assert [(r.to_object_id, [t.type_id for t in r.association_types]) for r in listed.results] == [(company.id, [279])]
    got = client.crm.objects.basic_api.get_by_id("contacts", contact.id, associations=["companies"])
    assert [(a.id, a.type) for a in got.associations["companies"].results] == [
        (company.id, "contact_to_company_unlabeled")
    ]


def test_association_type_id_table() -> None:
    from hub.sandbox.hubspot_builtins import ASSOC_TYPES

    expected = {
        1: ("contacts", "companies"),
        2: ("companies", "contacts"),
        279: ("contacts", "companies"),
        280: ("companies", "contacts"),
        3: ("deals", "contacts"),
        4: ("contacts", "deals"),
        5: ("deals", "companies"),
        341: ("deals", "companies"),
        15: ("contacts", "tickets"),
        16: ("tickets", "contacts"),
        26: ("tickets", "companies"),
        339: ("tickets", "companies"),
        202: ("notes", "contacts"),
        204: ("tasks", "contacts"),
        216: ("tasks", "deals"),
        228: ("notes", "tickets"),
        230: ("tasks", "tickets"),
    }
    assert {k: ASSOC_TYPES[k][:2] for k in expected} == expected


def test_associations_on_create_and_in_batch(client: hubspot.Client) -> None:
    company = create(client, "companies", name="Acme")
    primary = [
        {"to": {"id": company.id}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1}]}
    ]
    contact = client.crm.objects.basic_api.create(
        "contacts", SimplePublicObjectInputForCreate(properties={"email": "f@example.com"}, associations=primary)
    )
    listed = client.crm.associations.v4.basic_api.get_page("contacts", contact.id, "companies")
    assert sorted(t.type_id for t in listed.results[0].association_types) == [1, 279]  # primary implies unlabeled

    deal = create(client, "deals", dealname="D")
    made = client.crm.associations.v4.batch_api.create(
        "deals",
        "contacts",
        {
            "inputs": [
                {
                    "from": {"id": deal.id},
                    "to": {"id": contact.id},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}],
                }
            ]
        },
    )
    assert made.results[0].to_object_id == contact.id and made.results[0].from_object_type_id == "0-3"
    read = client.crm.associations.v4.batch_api.get_page("contacts", "deals", {"inputs": [{"id": contact.id}]})
    assert [(r._from.id, [t.to_object_id for t in r.to]) for r in read.results] == [(contact.id, [deal.id])]

    wrong = [{"to": {"id": company.id}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}]}]
    with pytest.raises(SDK_ERRORS) as exc:
        client.crm.objects.basic_api.create(
            "contacts", SimplePublicObjectInputForCreate(properties={}, associations=wrong)
        )
    assert exc.value.status == 400 and "not a valid association type" in error_of(exc)["message"]


# -- properties and pipelines -----------------------------------------------------------------------
def test_custom_properties_become_writable_and_validated(client: hubspot.Client) -> None:
    props = client.crm.properties
    props.groups_api.create("contacts", PropertyGroupCreate(name="hub", label="Hub"))
    level = PropertyCreate(
        name="tennis_level",
        label="Level",
        type="enumeration",
        field_type="select",
        group_name="hub",
        options=[
            OptionInput(label="Beginner", value="beginner", hidden=False),
            OptionInput(label="Pro", value="pro", hidden=False),
        ],
    )
    made = props.core_api.create("contacts", level)
    assert made.name == "tennis_level" and [o.value for o in made.options] == ["beginner", "pro"]
    assert "tennis_level" in {p.name for p in props.core_api.get_all("contacts").results}
    assert create(client, "contacts", tennis_level="pro").properties["tennis_level"] == "pro"
    with pytest.raises(SDK_ERRORS) as exc:
        create(client, "contacts", tennis_level="god")
    assert nested_problems(error_of(exc))[0]["error"] == "INVALID_OPTION"
    with pytest.raises(SDK_ERRORS) as exc:
        props.core_api.create("contacts", level)
    assert exc.value.status == 409 and error_of(exc)["category"] == "OBJECT_ALREADY_EXISTS"
    mismatch = PropertyCreate(name="score", label="Score", type="number", field_type="text", group_name="hub")
    with pytest.raises(SDK_ERRORS) as exc:
        props.core_api.create("contacts", mismatch)
    assert exc.value.status == 400 and "fieldType 'text' is not valid for a number property" in error_of(exc)["message"]


def test_unique_custom_property_serves_as_upsert_key(client: hubspot.Client) -> None:
    client.crm.properties.core_api.create(
        "deals",
        PropertyCreate(
            name="booking_ref",
            label="Booking",
            type="string",
            field_type="text",
            group_name="dealinformation",
            has_unique_value=True,
        ),
    )
    body = BatchInputSimplePublicObjectBatchInputUpsert(
        inputs=[{"id": "B-1", "idProperty": "booking_ref", "properties": {"dealname": "One"}}]
    )
    first = client.crm.objects.batch_api.upsert("deals", body).results[0]
    again = client.crm.objects.batch_api.upsert("deals", body).results[0]
    assert first.new is True and again.new is False and again.id == first.id
    with pytest.raises(SDK_ERRORS) as exc:
        create(client, "deals", dealname="Two", booking_ref="B-1")
    assert exc.value.status == 409


def test_default_pipelines_and_stage_validation(client: hubspot.Client) -> None:
    support = client.crm.pipelines.pipelines_api.get_by_id("tickets", "0")
    assert support.label == "Support Pipeline"
    assert [(s.id, s.metadata["ticketState"]) for s in support.stages] == [
        ("1", "OPEN"),
        ("2", "OPEN"),
        ("3", "OPEN"),
        ("4", "CLOSED"),
    ]
    sales = client.crm.pipelines.pipelines_api.get_by_id("deals", "default")
    assert [s.id for s in sales.stages][-2:] == ["closedwon", "closedlost"]

    stages = [
        PipelineStageInput(label=lab, display_order=i, metadata={"ticketState": st})
        for i, (lab, st) in enumerate([("Received", "OPEN"), ("Delivered", "CLOSED")])
    ]
    video = client.crm.pipelines.pipelines_api.create(
        "tickets", PipelineInput(label="Video", display_order=1, stages=stages)
    )
    extra = client.crm.pipelines.pipeline_stages_api.create(
        "tickets", video.id, PipelineStageInput(label="Review", display_order=2, metadata={"ticketState": "OPEN"})
    )
    assert extra.label == "Review"
    ticket = create(client, "tickets", subject="S", hs_pipeline=video.id, hs_pipeline_stage=extra.id)
    assert ticket.properties["hs_pipeline_stage"] == extra.id
    default_pipe = create(client, "tickets", subject="T", hs_pipeline_stage="2")
    assert default_pipe.properties["hs_pipeline"] == "0"
    for props in ({"subject": "U", "hs_pipeline": video.id, "hs_pipeline_stage": "1"}, {"subject": "no stage"}):
        with pytest.raises(SDK_ERRORS) as exc:
            create(client, "tickets", **props)
        assert nested_problems(error_of(exc))[0]["name"] == "hs_pipeline_stage"
    with pytest.raises(SDK_ERRORS) as exc:
        client.crm.pipelines.pipeline_stages_api.create(
            "tickets", video.id, PipelineStageInput(label="Bad", display_order=3, metadata={})
        )
    assert exc.value.status == 400 and "ticketState" in error_of(exc)["message"]
