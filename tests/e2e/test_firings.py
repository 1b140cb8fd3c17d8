"""The firings of one rules job: evaluated event by event, their guards decided together in one
round trip, in event order, and their history left in that order too."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.base import Collection, Write
from hub.engine import guards, history
from hub.engine.entities import key_hash
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
    if: "'skip' not in record.email"
    daily_limit: 2
    do:
      - record.set: {fields: {status: welcomed}}
"""
HS = Collection("contacts")


class _Counted:
    """The guards' script, counting the round trips it is sent in."""

    def __init__(self, script: Any) -> None:
        self.script = script
        self.trips: list[int] = []

    def many(self, conn: Any, calls: Any) -> Any:
        self.trips.append(len(calls))
        return self.script.many(conn, calls)


def test_one_rules_job_decides_its_firings_in_one_round_trip_and_in_event_order(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.use("", files={"mappings/contact.yaml": MAPPING, "rules.yaml": RULES})
    hs = hub.connector("hubspot")
    emails = ["c0@example.com", "skip1@example.com", "c2@example.com", "skip3@example.com", "c4@example.com",
              "c5@example.com"]  # fmt: skip
    recs = hs.upsert_many(HS, [Write({"email": e}) for e in emails])
    counted = _Counted(guards._DECIDE_SCRIPT)
    monkeypatch.setattr(guards, "_DECIDE_SCRIPT", counted)
    hub.ingest("hubspot", "contacts", [r.id for r in recs], kind="created")  # one webhook batch
    hub.work()
    assert counted.trips == [4]  # four firings past their condition, one round trip
    runs = list(reversed(history.read(hub.redis, rule="welcome", limit=10)))  # oldest first
    # Each entry in event order, whether its condition or its guards decided it; the daily limit
    # went to the first two events that passed the condition.
    assert [(r["record"], r["decision"], r["reason"]) for r in runs] == [
        (key_hash(f"email:{emails[0]}"), "fired", "fired"),
        (key_hash(f"email:{emails[1]}"), "skipped", "condition is false"),
        (key_hash(f"email:{emails[2]}"), "fired", "fired"),
        (key_hash(f"email:{emails[3]}"), "skipped", "condition is false"),
        (key_hash(f"email:{emails[4]}"), "skipped", "daily_limit"),
        (key_hash(f"email:{emails[5]}"), "skipped", "daily_limit"),
    ]
    assert [hs.get(HS, r.id).fields.get("hub_status") or None for r in recs] == [
        "welcomed", None, "welcomed", None, None, None
    ]
    assert hub.failed() == []
