"""The firings of one rules job: evaluated event by event, their guards decided together in one
round trip, in event order, their record writes made together, and their history left in event
order too."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from connectors.base import Collection, Write
from hub.engine import guards, history, state
from hub.engine.entities import key_hash
from hub.engine.state import RecordState, fingerprint
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
    """A script of the hub's, counting the round trips it is sent in (and the calls in each)."""

    def __init__(self, script: Any) -> None:
        self.script = script
        self.trips: list[int] = []

    def many(self, conn: Any, calls: Any) -> Any:
        self.trips.append(len(calls))
        return self.script.many(conn, calls)

    def __call__(self, conn: Any, keys: Any, args: Any = ()) -> Any:
        return self.many(conn, [(keys, args)])[0]


def test_one_rules_job_decides_its_firings_in_one_round_trip_and_in_event_order(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.use("", files={"mappings/contact.yaml": MAPPING, "rules.yaml": RULES})
    hs = hub.connector("hubspot")
    emails = ["c0@example.com", "skip1@example.com", "c2@example.com", "skip3@example.com", "c4@example.com",
              "c5@example.com"]  # fmt: skip
    recs = hs.upsert_many(HS, [Write({"email": e}) for e in emails])
    counted, applied = _Counted(guards._DECIDE_SCRIPT), _Counted(state._APPLY_SCRIPT)
    monkeypatch.setattr(guards, "_DECIDE_SCRIPT", counted)
    monkeypatch.setattr(state, "_APPLY_SCRIPT", applied)
    hub.ingest("hubspot", "contacts", [r.id for r in recs], kind="created")  # one webhook batch
    hub.work()
    assert counted.trips == [4]  # four firings past their condition, one round trip
    assert applied.trips == [6, 2]  # the six records synced, then the two rule writes together
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


NOTIFY_RULES = """\
channels:
  ops: {url: "${OPS_URL}"}
rules:
  - id: welcome
    when: {created: contact}
    do:
      - record.set: {fields: {status: welcomed}}
      - notify: {text: "a new contact"}
"""


def test_writes_made_together_still_happen_before_the_external_action_after_them(hub: Hub) -> None:
    """Each firing sets a field, then notifies: when each message arrives, its own firing's write
    is in the record state and the next firing's is not yet."""
    seen: list[list[bool]] = []  # per message: which records have their field written
    keys: list[str] = []
    welcomed = fingerprint("welcomed")
    records = RecordState(hub.redis)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append([records.fingerprints("contact", k, ["status"])["status"] == welcomed for k in keys])
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        hub.use("", files={"mappings/contact.yaml": MAPPING, "rules.yaml": NOTIFY_RULES},
                OPS_URL=f"http://127.0.0.1:{server.server_port}/ops")  # fmt: skip
        hs = hub.connector("hubspot")
        recs = hs.upsert_many(HS, [Write({"email": f"n{i}@example.com"}) for i in range(3)])
        keys.extend(f"email:n{i}@example.com" for i in range(3))
        hub.ingest("hubspot", "contacts", [r.id for r in recs], kind="created")
        hub.work()
        runs_order = [r["record"] for r in reversed(history.read(hub.redis, rule="welcome", limit=10))]
    finally:
        server.shutdown()
        server.server_close()
    order = [key_hash(k) for k in keys]
    assert sorted(runs_order) == sorted(order)
    # Messages in firing order; at each, the writes of that firing and the ones before it are made.
    by_firing = [order.index(h) for h in runs_order]
    assert seen == [[by_firing.index(i) <= n for i in range(3)] for n in range(3)]
    assert hub.failed() == []
