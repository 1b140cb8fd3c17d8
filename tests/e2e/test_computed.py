"""Computed fields the sync computes from one system's read: written back to every system that
maps them (the one that reported the record too), their previous values there for `from`
triggers, and rules reading the values the sync computed."""

from __future__ import annotations

import json

from connectors.base import Collection, Write
from hub.engine import history
from hub.engine.sync import _merged
from tests.support.hubenv import Hub

MAPPING = """\
entity: contact
identity: [email]
fields:
  email: {type: email, required: true}
  spent: number
  tier:
    type: enum
    values: [basic, gold]
    compute: "'gold' if record.spent > 1000 else 'basic'"
systems:
  hubspot:
    object: contacts
    fields: {email: email, spent: hub_spent, tier: hub_tier}
"""
RULES = """\
rules:
  - id: downgraded
    when: {changed: contact, field: tier, from: gold, to: basic}
    do:
      - record.set: {fields: {spent: "{{ record.spent }}"}}
  - id: gold_seen
    when: {created: contact}
    if: record.tier == 'gold'
    do:
      - record.set: {fields: {spent: "{{ record.spent }}"}}
"""
FILES = {"mappings/contact.yaml": MAPPING, "rules.yaml": RULES}
HS = Collection("contacts")


def fired(hub: Hub, rule: str) -> int:
    return sum(1 for e in history.read(hub.redis, rule=rule, limit=100) if e["decision"] == "fired")


def test_a_computed_field_goes_back_to_the_system_that_reported_its_inputs(hub: Hub) -> None:
    hub.use("", files=FILES)
    hs = hub.connector("hubspot")
    (rec,) = hs.upsert_many(HS, [Write({"email": "gil@example.com", "hub_spent": 1500})])
    before = hub.hubspot_writes()
    hub.ingest("hubspot", "contacts", [rec.id], kind="created")
    hub.work()
    assert hs.get(HS, rec.id).fields["hub_tier"] == "gold"  # written back where the inputs came from
    assert hub.hubspot_writes() - before == 1
    assert fired(hub, "gold_seen") == 1  # the rule read the tier the sync computed

    settled = hub.hubspot_writes()
    hub.ingest("hubspot", "contacts", [rec.id])  # the echo of the hub's own write
    hub.work()
    assert hub.hubspot_writes() == settled and fired(hub, "gold_seen") == 1

    hs.upsert_many(HS, [Write({"hub_spent": 40}, id=rec.id)])
    hub.ingest("hubspot", "contacts", [rec.id])
    hub.work()
    assert hs.get(HS, rec.id).fields["hub_tier"] == "basic"
    assert fired(hub, "downgraded") == 1  # `from: gold`: the previous computed value was kept
    assert fired(hub, "gold_seen") == 1
    assert hub.failed() == []


def test_an_edit_of_a_computed_field_in_a_system_is_refused_and_put_back(hub: Hub) -> None:
    hub.use("", files=FILES)
    hs = hub.connector("hubspot")
    (rec,) = hs.upsert_many(HS, [Write({"email": "hal@example.com", "hub_spent": 50})])
    hub.ingest("hubspot", "contacts", [rec.id], kind="created")
    hub.work()
    assert hs.get(HS, rec.id).fields["hub_tier"] == "basic"
    hs.upsert_many(HS, [Write({"hub_tier": "gold"}, id=rec.id)])  # someone overrides the hub's value
    hub.ingest("hubspot", "contacts", [rec.id])
    hub.work()
    assert hs.get(HS, rec.id).fields["hub_tier"] == "basic"
    (conflict,) = [json.loads(c) for c in hub.redis.lrange("hub:conflicts", 0, -1)]
    assert (conflict["field"], conflict["system"], conflict["reason"]) == ("tier", "hubspot", "deny:hub")
    assert fired(hub, "downgraded") == 0 and fired(hub, "gold_seen") == 0


def _event(version: int, changes: dict[str, list[object]], computed: list[str] | None) -> dict[str, object]:
    ev: dict[str, object] = {
        "entity": "contact", "key": "email:a@b.c", "kind": "updated", "system": "hubspot", "id": "1",
        "version": version, "occurrence": f"v{version}", "changes": changes, "values": {"spent": version},
        "caused_by": None,
    }  # fmt: skip
    if computed:
        ev["computed"] = computed
    return ev


def test_merged_events_keep_computed_values_only_while_they_are_fresh() -> None:
    first = _event(1, {"spent": [None, 1]}, ["tier"])
    assert _merged([first, _event(2, {}, None)])[0]["computed"] == ["tier"]  # nothing changed since
    assert "computed" not in _merged([first, _event(2, {"spent": [1, 2]}, None)])[0]  # an input may have moved
    assert _merged([_event(1, {"spent": [None, 1]}, None), _event(2, {"spent": [1, 2]}, ["tier"])])[0][
        "computed"
    ] == ["tier"]
