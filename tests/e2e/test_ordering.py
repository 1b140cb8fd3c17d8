"""Ordering: four worker processes, updates to the same records interleaved, delivered twice and out
of order — every record ends at its latest value in every system."""

from __future__ import annotations

import random

import pytest

from connectors.base import Collection, Write
from hub import jobs
from tests.support.hubenv import Hub
from tests.support.workers import Workers, settle

MAPPING = """\
entity: contact
identity: [email]
fields:
  email: {type: email, required: true}
  first_name: string
  step: integer
systems:
  hubspot:
    object: contacts
    fields: {email: email, first_name: firstname, step: hub_step}
  firestore:
    collection: contacts
    fields: {email: email, first_name: first_name, step: step}
"""
FILES = {"mappings/contact.yaml": MAPPING, "rules.yaml": "rules: []\n"}
HS = Collection("contacts")
FS = Collection("contacts")


@pytest.mark.usefixtures("needs_firestore")
def test_four_workers_and_interleaved_updates_end_in_the_latest_state(hub: Hub) -> None:
    hub.use("", files=FILES)
    rng = random.Random(7)
    n, rounds = 12, 5
    hs = hub.connector("hubspot")
    ids = [r.id for r in hs.upsert_many(HS, [Write({"email": f"c{i}@example.com", "firstname": "v0",
                                                    "hub_step": "0"}) for i in range(n)])]
    workers = Workers(hub, "2026-04-01T09:00:00+00:00")
    workers.start(4)
    try:
        for step in range(1, rounds + 1):
            hs.upsert_many(HS, [Write({"firstname": f"v{step}", "hub_step": str(step)}, id=i) for i in ids])
            # Each change is announced twice, in batches of shuffled, overlapping records.
            events = [{"system": "hubspot", "coll": "contacts", "id": i, "kind": "updated"} for i in ids * 2]
            rng.shuffle(events)
            for k in range(0, len(events), 5):
                jobs.enqueue(hub.redis, "hub.engine.intake.handle_events", "hubspot", events[k:k + 5],
                             queue_name=jobs.QUEUE_HIGH)
        settle(hub.redis, workers, 4)
    finally:
        workers.stop()
    docs = {d.fields["email"]: (d.fields["first_name"], d.fields["step"])
            for d in hub.connector("firestore").iterate(FS)}
    assert docs == {f"c{i}@example.com": (f"v{rounds}", rounds) for i in range(n)}
    assert hub.failed() == []
