"""Sync across Airtable, HubSpot and Firestore: settles without echo loops, owners win, conflicts
are recorded, identities match, and a backfill copies a whole table."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connectors.base import Collection, Write
from tests.support.hubenv import Hub

MAPPING = """\
entity: client
identity: [email]
fields:
  email: {type: email, required: true}
  first_name: string
  city: string
  status: {type: enum, values: [lead, active, churned], default: lead}
  score: {type: number, owner: firestore}
systems:
  airtable:
    base: appHubSandbox0001
    table: Clients
    fields: {email: Email, first_name: First name, city: City, status: Status, score: Score, hubspot_id: HubSpot ID}
  hubspot:
    object: contacts
    fields: {email: email, first_name: firstname, city: hub_city, status: hub_status, score: hub_score}
  firestore:
    collection: clients
    fields: {email: email, first_name: first_name, city: city, status: status, score: score}
"""
FILES = {"mappings/client.yaml": MAPPING, "rules.yaml": "rules: []\n"}
AT = Collection("Clients", base="appHubSandbox0001")
HS = Collection("contacts")
FS = Collection("clients")

pytestmark = pytest.mark.usefixtures("needs_firestore")


def writes(hub: Hub) -> dict[str, int]:
    """Write requests each system has received so far."""
    at = hub.stats("airtable")["requests"]
    return {
        "airtable": sum(n for k, n in at.items() if k.split()[0] in ("POST", "PATCH", "PUT") and "/meta/" not in k
                        and "webhooks" not in k and "listRecords" not in k),
        "hubspot": hub.hubspot_writes(),
        "firestore": hub.connector("firestore").counts["commits"],
    }


def one(hub: Hub, system: str, coll: Collection) -> Any:
    records = list(hub.connector(system).iterate(coll))
    assert len(records) == 1, records
    return records[0]


def echo_all(hub: Hub) -> None:
    """Every system reports its record as changed (what their webhooks do after the hub writes)."""
    hub.ingest("airtable", "Clients", [one(hub, "airtable", AT).id], base="appHubSandbox0001")
    hub.ingest("hubspot", "contacts", [one(hub, "hubspot", HS).id])
    hub.ingest("firestore", "clients", [one(hub, "firestore", FS).id])
    hub.work()


def test_a_new_contact_reaches_every_system_once_and_echoes_are_ignored(hub: Hub) -> None:
    hub.use("", files=FILES)
    (rec,) = hub.connector("hubspot").upsert_many(HS, [Write({"email": "Ana@Example.com", "firstname": "Ana",
                                                              "hub_status": "lead"})])
    before = writes(hub)
    hub.ingest("hubspot", "contacts", [rec.id], kind="created")
    hub.work()
    after = writes(hub)
    assert {k: after[k] - before[k] for k in after} == {"airtable": 1, "hubspot": 0, "firestore": 1}
    at = one(hub, "airtable", AT).fields
    assert at["Email"] == "ana@example.com" and at["First name"] == "Ana" and at["HubSpot ID"] == rec.id
    assert one(hub, "firestore", FS).fields["first_name"] == "Ana"
    echo_all(hub)
    assert writes(hub) == after, "an echo of the hub's own writes caused another write"
    assert hub.failed() == []


def test_edits_on_every_side_settle_after_one_write_per_side(hub: Hub) -> None:
    hub.use("", files=FILES)
    (rec,) = hub.connector("hubspot").upsert_many(HS, [Write({"email": "bo@example.com", "firstname": "Bo"})])
    hub.ingest("hubspot", "contacts", [rec.id], kind="created")
    hub.work()
    at_id, fs_id = one(hub, "airtable", AT).id, one(hub, "firestore", FS).id
    # Three people edit three different fields, one in each system, at the same time.
    hub.connector("hubspot").upsert_many(HS, [Write({"firstname": "Bob"}, id=rec.id)])
    hub.connector("airtable").upsert_many(AT, [Write({"City": "Lyon"}, id=at_id)])
    hub.connector("firestore").upsert_many(FS, [Write({"status": "active"}, id=fs_id)])
    before = writes(hub)
    from hub import jobs

    events = [
        {"system": "hubspot", "coll": "contacts", "id": rec.id, "kind": "updated"},
        {"system": "airtable", "coll": "Clients", "base": "appHubSandbox0001", "id": at_id, "kind": "updated"},
        {"system": "firestore", "coll": "clients", "id": fs_id, "kind": "updated"},
    ]
    jobs.enqueue(hub.redis, "hub.engine.intake.handle_events", "mixed", events, queue_name=jobs.QUEUE_HIGH)
    hub.work()
    after = writes(hub)
    assert {k: after[k] - before[k] for k in after} == {"airtable": 1, "hubspot": 1, "firestore": 1}
    echo_all(hub)
    assert writes(hub) == after
    expected = {"first_name": "Bob", "city": "Lyon", "status": "active"}
    assert {k: one(hub, "firestore", FS).fields[k] for k in expected} == expected
    at = one(hub, "airtable", AT).fields
    assert (at["First name"], at["City"], at["Status"]) == ("Bob", "Lyon", "active")
    hs = one(hub, "hubspot", HS).fields
    assert (hs["firstname"], hs["hub_city"], hs["hub_status"]) == ("Bob", "Lyon", "active")


def test_the_owner_wins_and_the_conflict_is_recorded(hub: Hub) -> None:
    hub.use("", files=FILES)
    (doc,) = hub.connector("firestore").upsert_many(FS, [Write({"email": "cy@example.com", "score": 7})])
    hub.ingest("firestore", "clients", [doc.id], kind="created")
    hub.work()
    at_id = one(hub, "airtable", AT).id
    assert one(hub, "airtable", AT).fields["Score"] == 7
    # Someone edits the score in Airtable, but Firestore owns it.
    hub.connector("airtable").upsert_many(AT, [Write({"Score": 99}, id=at_id)])
    hub.ingest("airtable", "Clients", [at_id], base="appHubSandbox0001")
    hub.work()
    assert one(hub, "airtable", AT).fields["Score"] == 7, "the owner's value was put back"
    assert one(hub, "firestore", FS).fields["score"] == 7
    assert one(hub, "hubspot", HS).fields["hub_score"] == "7"
    (conflict,) = [json.loads(c) for c in hub.redis.lrange("hub:conflicts", 0, -1)]
    assert conflict["field"] == "score" and conflict["system"] == "airtable" and conflict["reason"] == "deny:firestore"


def test_a_backfill_copies_every_record_in_pages(hub: Hub) -> None:
    from hub.engine.backfill import backfill

    hub.use("", files=FILES)
    rows = [Write({"email": f"user{i}@example.com", "first_name": f"User {i}", "city": "Paris"}) for i in range(230)]
    hub.connector("firestore").upsert_many(FS, rows)
    report = backfill(hub.rt, "client", "firestore", "airtable", page_size=100)
    assert (report.read, report.written, report.done) == (230, 230, True)
    names = {r.fields["First name"] for r in hub.connector("airtable").iterate(AT)}
    assert len(names) == 230
    again = backfill(hub.rt, "client", "firestore", "airtable", page_size=100)
    assert again.read == 230
    assert len(list(hub.connector("airtable").iterate(AT))) == 230, "a second backfill updates, never duplicates"
