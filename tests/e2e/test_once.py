"""A rule action that is one write of the hub's record state (``record.set``) is made once by that
write itself: the script records the action done with it, so a duplicated or retried rules job
finds it done and writes nothing again, with no lease taken around it."""

from __future__ import annotations

import json

from connectors.base import Collection, Write
from hub import jobs
from hub.engine import history
from hub.engine.replay import RECENT
from tests.support.hubenv import Hub

MAPPING = """\
entity: contact
identity: [email]
fields:
  email: {type: email, required: true}
  status: string
systems:
  hubspot:
    object: contacts
    fields: {email: email, status: hub_status}
"""
RULES = """\
rules:
  - id: welcome
    when: {created: contact}
    do:
      - record.set: {fields: {status: welcomed}}
"""
FILES = {"mappings/contact.yaml": MAPPING, "rules.yaml": RULES}
HS = Collection("contacts")
RULES_JOB = "hub.engine.rules.run_events"


def test_a_record_set_retried_after_its_write_writes_nothing_again(hub: Hub) -> None:
    hub.use("", files=FILES)
    hs = hub.connector("hubspot")
    (rec,) = hs.upsert_many(HS, [Write({"email": "ines@example.com"})])
    hub.ingest("hubspot", "contacts", [rec.id], kind="created")
    hub.work()
    assert hs.get(HS, rec.id).fields["hub_status"] == "welcomed"
    # The action's marker came with its write (run_once's would hold the action's result).
    assert [hub.redis.get(k) for k in hub.redis.scan_iter("hub:act:*")] == [b"done:{}"]
    # The intake ran that rules batch in place; the same batch as a job of its own, as drain queues
    # one: the record event of the creation (its occurrence as the worker noted it for replay).
    (noted,) = [e for e in hub.redis.lrange(RECENT, 0, -1) if json.loads(e)["kind"] == "created"]
    created = {
        **{k: json.loads(noted)[k] for k in ("entity", "key", "kind", "occurrence")},
        "system": "hubspot",
        "id": rec.id,
        "version": int(json.loads(noted)["occurrence"].rsplit(":v", 1)[1]),
        "changes": {"email": [None, "ines@example.com"]},
        "values": {"email": "ines@example.com"},
        "source_kind": "created",
        "caused_by": None,
        "at_ms": 0,
    }

    hs.upsert_many(HS, [Write({"hub_status": "vip"}, id=rec.id)])  # someone changes it since
    hub.ingest("hubspot", "contacts", [rec.id])
    hub.work()
    jobs.enqueue(hub.redis, RULES_JOB, [created])  # the same rules batch again (a retry, a duplicate)
    hub.work()
    assert hs.get(HS, rec.id).fields["hub_status"] == "vip"  # not written over by the same action again
    runs = history.read(hub.redis, rule="welcome", limit=10)
    assert [[a["outcome"] for a in r.get("actions", [])] for r in runs] == [["already"], ["done"]]
    assert hub.failed() == []
