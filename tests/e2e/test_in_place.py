"""A webhook batch is one job: its propagation and its rules run in the intake's own job. One that
fails there is queued as a job of its own, and the batch is not ingested again."""

from __future__ import annotations

from collections import Counter

from rq.job import Job

from connectors.base import Collection, Write
from connectors.mailchimp import MailchimpConnector
from hub import jobs
from hub.engine.state import RecordState
from hub.engine.sync import follow_ups_outbox, hub_call
from hub.worker import build
from tests.support.hubenv import FAST, Hub

LIST = "hubsandbx1"
MAPPING = f"""\
entity: contact
identity: [email]
fields:
  email: {{type: email, required: true}}
  first_name: string
systems:
  hubspot:
    object: contacts
    fields: {{email: email, first_name: firstname}}
  mailchimp:
    list: {LIST}
    fields: {{email: email_address, first_name: merge_fields.FNAME}}
"""
RULES = """\
rules:
  - id: welcome
    when: {created: contact}
    do:
      - mailchimp.event: {name: welcome}
  - id: call
    when: {created: contact}
    do:
      - hubspot.create_task: {subject: "Call {{ record.first_name }}"}
"""
FILES = {"mappings/contact.yaml": MAPPING, "rules.yaml": RULES}
HS = Collection("contacts")
TASKS = Collection("tasks")
INTAKE = "hub.engine.intake.handle_events"
PROPAGATE = "hub.engine.propagate.propagate"


def setup(hub: Hub, n: int) -> list[str]:
    rt = hub.use("", files=FILES)
    env = hub.stack.env
    mc = MailchimpConnector(env["MAILCHIMP_API_KEY"], hub.redis, host=env["MAILCHIMP_HOST"], policy=FAST)
    rt.use_connector("mailchimp", mc)
    rows = [Write({"email": f"p{i}@example.com", "firstname": f"P{i}"}) for i in range(n)]
    return [r.id for r in hub.connector("hubspot").upsert_many(HS, rows)]


def finished(hub: Hub) -> Counter[str]:
    out: Counter[str] = Counter()
    for q in jobs.QUEUES:
        done = jobs.queue(hub.redis, q).finished_job_registry.get_job_ids()
        out.update(j.func_name for j in Job.fetch_many(done, connection=hub.redis, serializer=jobs.HubSerializer) if j)
    return out


def batch_reads(hub: Hub) -> int:
    return sum(n for k, n in hub.stats("hubspot")["requests"].items() if "batch/read" in k)


def outcome(hub: Hub, n: int) -> tuple[set[str], Counter[str]]:
    mc = hub.connector("mailchimp")
    members = {m.fields["email_address"] for m in mc.iterate(Collection(LIST))}
    events = Counter(e["name"] for i in range(n) for e in mc.events(LIST, f"p{i}@example.com"))
    return members, events


def test_a_batch_is_one_job(hub: Hub) -> None:
    ids = setup(hub, 3)
    hub.ingest("hubspot", "contacts", ids, kind="created")
    hub.work()
    assert outcome(hub, 3) == ({f"p{i}@example.com" for i in range(3)}, Counter({"welcome": 3}))
    assert len(list(hub.connector("hubspot").iterate(TASKS))) == 3
    assert finished(hub) == Counter({INTAKE: 1})  # no propagation job, no rules job
    assert hub.failed() == []


def test_a_propagation_failing_in_place_is_queued_alone(hub: Hub) -> None:
    ids = setup(hub, 3)
    hub.stack.handles["mailchimp"].standin.faults.update({"error_rate": 1.0, "error_statuses": [503]})
    hub.ingest("hubspot", "contacts", ids, kind="created")
    build(hub.redis).work(burst=True, with_scheduler=False, max_jobs=1, logging_level="WARNING")
    assert finished(hub) == Counter({INTAKE: 1})  # the batch itself succeeded: it is not retried
    queued = Counter(j.func_name for j in jobs.queue(hub.redis).jobs)
    assert queued[PROPAGATE] == 1 and sum(queued.values()) == 1  # the Mailchimp write, on its own
    assert len(list(hub.connector("hubspot").iterate(TASKS))) == 3  # the rules ran, after it failed
    assert batch_reads(hub) == 1

    hub.stack.handles["mailchimp"].standin.faults.update({"error_rate": 0.0})
    hub.work()
    assert outcome(hub, 3)[0] == {f"p{i}@example.com" for i in range(3)}
    assert finished(hub) == Counter({INTAKE: 1, PROPAGATE: 1})
    assert batch_reads(hub) == 1  # HubSpot was read once: the batch was not ingested again
    assert hub.failed() == []


def test_a_retried_batch_drains_what_its_killed_follow_ups_recorded(hub: Hub) -> None:
    (rid,) = setup(hub, 1)
    hub.ingest("hubspot", "contacts", [rid], kind="created")
    hub.work()
    # A worker killed in the middle of the batch's rules, right after a rule's write was recorded
    # (as a `record.set` records it) and before it was drained: rq retries the batch's job.
    job_id = "batch-killed-mid-rules"
    left = follow_ups_outbox(f"hub:outbox:{job_id}")
    call = hub_call("contact", "email:p0@example.com", {"first_name": "Zoe"}, kind="rule", at_ms=1,
                    tracked=set(), outbox=left, rule="welcome")  # fmt: skip
    assert RecordState(hub.redis).apply(**call).changed
    events = [{"system": "hubspot", "coll": "contacts", "id": rid, "kind": "created"}]
    jobs.enqueue(hub.redis, INTAKE, "hubspot", events, queue_name=jobs.QUEUE_HIGH, job_id=job_id)
    hub.work()
    assert hub.connector("hubspot").get(HS, rid).fields["firstname"] == "Zoe"
    (member,) = hub.connector("mailchimp").iterate(Collection(LIST))
    assert member.fields["merge_fields"]["FNAME"] == "Zoe"
    assert not hub.redis.exists(left)
    assert hub.failed() == []
