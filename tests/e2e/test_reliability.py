"""Exactly once under stress: duplicate webhooks, a worker SIGKILLed mid-rule, a Redis restart,
and a 90-day wait surviving restarts — real `hub worker` processes, a real redis-server with AOF.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from connectors.base import Collection, Write
from hub import jobs
from hub.engine import waits
from tests.support.hubenv import Hub, Stack
from tests.support.procs import RedisServer, wait_for
from tests.support.receiver import Receiver, receiving
from tests.support.workers import Workers, settle

LIST = "hubsandbx1"
SECRET = "whsec_" + "cmVsaWFiaWxpdHktdGVzdC1vdXRib3VuZC1zZWNyZXQ="
MAPPING = f"""\
entity: contact
identity: [email]
consent: marketing_consent
fields:
  email: {{type: email, required: true}}
  first_name: string
  marketing_consent: {{type: bool, default: false}}
systems:
  hubspot:
    object: contacts
    fields: {{email: email, first_name: firstname, marketing_consent: hub_consent}}
  mailchimp:
    list: {LIST}
    fields: {{email: email_address, first_name: merge_fields.FNAME}}
"""
RULES = """\
outbound:
  crm: {url: "${RELIABILITY_RECEIVER}", secret: "${RELIABILITY_SECRET}"}
rules:
  - id: onboard
    when: {created: contact}
    do:
      - mailchimp.event: {name: welcome}
      - hubspot.create_task: {subject: "Call {{ record.first_name }}"}
      - webhook.send: {to: crm, type: contact.created, data: {first_name: "{{ record.first_name }}"}}
      - mailchimp.tag: {tags: [onboarded]}
  - id: follow_up_d90
    when: {created: contact}
    wait: 90d
    do:
      - mailchimp.event: {name: d90}
"""
FILES = {"mappings/contact.yaml": MAPPING, "rules.yaml": RULES}
T0 = "2026-02-02T09:00:00+00:00"


@pytest.fixture
def aof(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis-aof", appendonly=True).start()
    yield server
    server.stop(kill=True)


@pytest.fixture
def rhub(stack: Stack, aof: RedisServer, tmp_path: Path) -> Iterator[Hub]:
    stack.reset()
    conn = redis.Redis.from_url(aof.url)
    h = Hub(stack, conn, aof.url, tmp_path)
    yield h
    from tests.support.workers import stop_all

    stop_all()
    from hub import clock
    from hub.runtime import Runtime

    Runtime.install(None)
    clock.pin(None)


def create_contacts(hub: Hub, n: int) -> list[str]:
    rows = [Write({"email": f"person{i}@example.com", "firstname": f"P{i}", "hub_consent": "true"}) for i in range(n)]
    return [r.id for r in hub.connector("hubspot").upsert_many(Collection("contacts"), rows)]


def deliver(hub: Hub, ids: list[str], copies: int = 2) -> None:
    """HubSpot's webhooks for the new contacts — each delivered ``copies`` times, in batches."""
    for _ in range(copies):
        for i in range(0, len(ids), 5):
            events = [{"system": "hubspot", "coll": "contacts", "id": x, "kind": "created"} for x in ids[i:i + 5]]
            jobs.enqueue(hub.redis, "hub.engine.intake.handle_events", "hubspot", events, queue_name=jobs.QUEUE_HIGH)


def outcomes(hub: Hub, receiver: Receiver, n: int) -> dict[str, Any]:
    mc = hub.connector("mailchimp")
    events = Counter()
    for i in range(n):
        events.update(e["name"] for e in mc.events(LIST, f"person{i}@example.com"))
    tasks = list(hub.connector("hubspot").iterate(Collection("tasks")))
    ids = Counter(r["headers"].get("webhook-id") for r in receiver.requests if r["status"] == 200)
    return {"events": dict(events), "tasks": len(tasks), "task_keys": len({t.fields.get("hub_action_key")
                                                                           for t in tasks}),
            "webhooks": len(ids)}


@pytest.mark.usefixtures("needs_firestore")
def test_duplicates_a_killed_worker_and_a_redis_restart_change_no_outcome(rhub: Hub, aof: RedisServer) -> None:
    n = 20
    with receiving() as receiver:
        rhub.use("", files=FILES, RELIABILITY_RECEIVER=receiver.url, RELIABILITY_SECRET=SECRET)
        rhub.pin(T0)
        rhub.stack.handles["mailchimp"].standin.faults.update({"latency_ms": 40.0})  # widen the mid-rule window
        ids = create_contacts(rhub, n)
        workers = Workers(rhub, T0)
        deliver(rhub, ids)
        workers.start(2)
        # Kill a worker in the middle of the rules: some actions done, others not yet.
        wait_for(lambda: len(rhub.redis.keys("hub:act:*")) >= 12, timeout=60, what="actions under way")
        workers.kill(0)
        deliver(rhub, ids[:10])  # a provider retry while a worker is down
        # Restart Redis (AOF) while work is still going on.
        wait_for(lambda: len(rhub.redis.keys("hub:act:*")) >= 30, timeout=60, what="more actions")
        aof.restart()
        settle(rhub.redis, workers, 2)
        workers.stop()
        got = outcomes(rhub, receiver, n)
    assert rhub.failed() == []
    assert got == {"events": {"welcome": n}, "tasks": n, "task_keys": n, "webhooks": n}
    tags = [rhub.connector("mailchimp").get(Collection(LIST), r.id).fields["tags"]
            for r in rhub.connector("mailchimp").iterate(Collection(LIST))]
    assert all(t == [t[0]] and t[0]["name"] == "onboarded" for t in tags) and len(tags) == n
    assert waits.pending(rhub.redis, 100).__len__() == n  # one 90-day wait per contact, not two


@pytest.mark.usefixtures("needs_firestore")
def test_a_90_day_wait_survives_restarts_and_fires_once(rhub: Hub, aof: RedisServer) -> None:
    with receiving() as receiver:
        rhub.use("", files=FILES, RELIABILITY_RECEIVER=receiver.url, RELIABILITY_SECRET=SECRET)
        ids = create_contacts(rhub, 1)
        deliver(rhub, ids, copies=1)
        workers = Workers(rhub, T0)
        workers.start(1)
        settle(rhub.redis, workers, 1)
        workers.stop()
        assert len(waits.pending(rhub.redis)) == 1
        aof.stop(kill=True)  # everything goes down, Redis included (killed, not shut down cleanly)
        aof.start()
        for day, expected in ((89, 0), (91, 1), (120, 1)):
            later = Workers(rhub, _plus_days(T0, day))
            later.start(1)
            settle(rhub.redis, later, 1)
            later.stop()
            d90 = outcomes(rhub, receiver, 1)["events"].get("d90", 0)
            from hub.engine import history

            assert d90 == expected, f"day {day}: {d90} follow-up(s); runs: {history.read(rhub.redis, limit=5)}"
        assert waits.pending(rhub.redis) == []


def _plus_days(iso: str, days: int) -> str:
    from datetime import datetime, timedelta

    return (datetime.fromisoformat(iso) + timedelta(days=days)).isoformat()


def test_reaping_needs_a_dead_worker(redis_conn: redis.Redis) -> None:
    """A job whose worker is alive is left alone; a dead worker's job goes back to rq's handling."""
    from hub.worker import _worker_dead

    redis_conn.hset("rq:worker:alive", mapping={"hostname": os.uname().nodename, "pid": os.getpid()})
    redis_conn.hset("rq:worker:gone", mapping={"hostname": os.uname().nodename, "pid": 2**22 + 17})
    assert not _worker_dead(redis_conn, "alive")
    assert _worker_dead(redis_conn, "gone")
    assert _worker_dead(redis_conn, "never-registered")
