"""A rule action that is one write of the hub's record state (``record.set``) is made once by that
write itself: the script records the action done with it, so a duplicated or retried rules job
finds it done and writes nothing again, with no lease taken around it."""

from __future__ import annotations

from rq.job import Job

from connectors.base import Collection, Write
from hub import jobs
from hub.engine import history
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
    finished = jobs.queue(hub.redis, jobs.QUEUE_DEFAULT).finished_job_registry.get_job_ids()
    (rules_job,) = [
        j for j in Job.fetch_many(finished, connection=hub.redis, serializer=jobs.HubSerializer)
        if j is not None and j.func_name == RULES_JOB and j.args[0][0]["kind"] == "created"
    ]  # fmt: skip

    hs.upsert_many(HS, [Write({"hub_status": "vip"}, id=rec.id)])  # someone changes it since
    hub.ingest("hubspot", "contacts", [rec.id])
    hub.work()
    jobs.enqueue(hub.redis, RULES_JOB, *rules_job.args)  # the same rules job again (a retry, a duplicate)
    hub.work()
    assert hs.get(HS, rec.id).fields["hub_status"] == "vip"  # not written over by the same action again
    runs = history.read(hub.redis, rule="welcome", limit=10)
    assert [[a["outcome"] for a in r.get("actions", [])] for r in runs] == [["already"], ["done"]]
    assert hub.failed() == []
