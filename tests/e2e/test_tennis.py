"""Tennis Breakdown, T5 — every automation row, on a pinned clock, through the real path:
Airtable records, the upload app's signed webhook, workers, Mailchimp events, the ops channel.

The story: three leads arrive on Monday 09:00. Ben uploads an (invalid) video at 71 h, Cy a valid
one at 80 h. Cy's analysis is delivered; she rates it 2/5 and never downloads it. Ana never comes
back. Every email a client gets is a Mailchimp event; the test counts them.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.base import Collection, Write
from hub.engine.live import sign_standard_webhook
from hub.engine.schedule import run_rule
from tests.support.hubenv import Hub
from tests.support.receiver import Receiver, receiving

PACK = "examples/tennis_breakdown"
BASE = "appHubSandbox0001"
CLIENTS = Collection("Clients", base=BASE)
TICKETS = Collection("Tickets", base=BASE)
LIST = "hubsandbx1"
SECRET = "whsec_" + "dGVubmlzLXVwbG9hZC1zZWNyZXQtZm9yLXRlc3Rz"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EMAILS = {"ana": "ana@example.com", "ben": "ben@example.com", "cy": "cy@example.com"}


def at(hub: Hub, hours: float) -> None:
    hub.pin((T0 + timedelta(hours=hours)).isoformat())
    hub.work()


def mail(hub: Hub) -> dict[str, Counter[str]]:
    """Mailchimp events each client received (the emails its journeys send)."""
    mc = hub.connector("mailchimp")
    return {who: Counter(e["name"] for e in mc.events(LIST, email)) for who, email in EMAILS.items()}


def airtable_row(hub: Hub, coll: Collection, field: str, value: str) -> Any:
    rows = [r for r in hub.connector("airtable").iterate(coll) if r.fields.get(field) == value]
    assert len(rows) == 1, rows
    return rows[0]


def operator_edits(hub: Hub, coll: Collection, row_id: str, fields: dict[str, Any]) -> None:
    """Someone edits a row in Airtable; Airtable's webhook tells the hub."""
    hub.connector("airtable").upsert_many(coll, [Write(fields, id=row_id)])
    hub.ingest("airtable", coll.name, [row_id], base=BASE)
    hub.work()


def upload(hub: Hub, client: str, ticket: str, *, valid: bool) -> None:
    """The upload app's signed webhook (Standard Webhooks) to /webhooks/in/video_uploaded."""
    from hub.app import create_app

    assert hub.rt is not None
    payload = {"email": EMAILS[client], "ticket_id": ticket, "filename": f"{client}.mp4", "size_mb": 245,
               "duration_sec": 185, "valid": valid}
    body = json.dumps(payload).encode()
    msg_id, ts = f"msg_{ticket}", int(time.time())
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts),
               "webhook-signature": sign_standard_webhook(SECRET, msg_id, ts, body), "Content-Type": "application/json"}
    client_app = create_app(hub.rt.settings, config_dir=hub.rt.config_dir, conn=hub.redis).test_client()
    for _ in range(2):  # the upload app retries: the second delivery is acknowledged and dropped
        resp = client_app.post("/webhooks/in/video_uploaded", data=body, headers=headers)
        assert resp.status_code in (200, 202), resp.get_json()
    hub.work()


@pytest.fixture
def ops(hub: Hub) -> Any:
    with receiving() as rec:
        hub.use(PACK, AIRTABLE_BASE_ID=BASE, MAILCHIMP_LIST_ID=LIST, TENNIS_OPS_WEBHOOK_URL=rec.url,
                TENNIS_UPLOAD_WEBHOOK_SECRET=SECRET)
        yield rec


@pytest.mark.usefixtures("needs_firestore")
def test_t5_every_automation_row(hub: Hub, ops: Receiver) -> None:
    hub.pin(T0.isoformat())
    rows = hub.connector("airtable").upsert_many(CLIENTS, [
        Write({"Email": email, "First name": who.capitalize(), "Status": "lead", "Marketing consent": True,
               "Acquired at": T0.isoformat()}) for who, email in EMAILS.items()
    ])
    hub.ingest("airtable", "Clients", [r.id for r in rows], kind="created", base=BASE)
    hub.work()
    # T5.1 welcome email, now, once each — also when Airtable's webhook is delivered twice.
    hub.ingest("airtable", "Clients", [r.id for r in rows], kind="created", base=BASE)
    hub.work()
    assert {w: m["welcome"] for w, m in mail(hub).items()} == {"ana": 1, "ben": 1, "cy": 1}

    at(hub, 71)
    upload(hub, "ben", "TICKET-1", valid=False)  # T5.2: ticket on the board + confirmation email
    t1 = airtable_row(hub, TICKETS, "Ticket", "TICKET-1")
    assert t1.fields["Status"] == "received" and t1.fields["Client email"] == EMAILS["ben"]
    assert mail(hub)["ben"]["video_received"] == 1
    operator_edits(hub, TICKETS, t1.id, {"Queue (h)": 60})

    at(hub, 72)  # T5.3: the D+3 reminder goes to Ana and Cy — not to Ben, who uploaded at 71 h
    assert {w: m["upload_reminder"] for w, m in mail(hub).items()} == {"ana": 1, "ben": 0, "cy": 1}

    at(hub, 80)
    upload(hub, "cy", "TICKET-2", valid=True)
    t2 = airtable_row(hub, TICKETS, "Ticket", "TICKET-2")
    operator_edits(hub, TICKETS, t2.id, {"Queue (h)": 10})

    at(hub, 95)  # T5.5 for ticket 1 (24 h): alert, and the queue-update email since its queue is 60 h
    assert [b["text"] for b in ops.bodies] == ["Ticket TICKET-1 not started 24 h after reception"]
    assert mail(hub)["ben"]["queue_update"] == 1

    at(hub, 100)
    delivered = (T0 + timedelta(hours=100)).isoformat()
    operator_edits(hub, TICKETS, t2.id, {"Status": "delivered", "Delivered at": delivered})

    at(hub, 104)  # T5.5 for ticket 2: delivered already, so nothing
    assert len(ops.bodies) == 1 and mail(hub)["cy"]["queue_update"] == 0

    at(hub, 119)  # T5.4: ticket 1's video is invalid, still untouched after 2 days → contact Ben
    assert mail(hub)["ben"]["invalid_video"] == 1 and mail(hub)["cy"]["invalid_video"] == 0

    at(hub, 191)  # T5.6: ticket 1 not ready after 5 days → update email; ticket 2 was delivered
    assert mail(hub)["ben"]["analysis_update"] == 1 and mail(hub)["cy"]["analysis_update"] == 0

    at(hub, 200)  # T7: Cy rates 2/5 → a free revision is offered and the team is told
    operator_edits(hub, TICKETS, t2.id, {"Feedback rating": 2})
    assert mail(hub)["cy"]["free_revision"] == 1
    assert ops.bodies[-1]["text"] == "Ticket TICKET-2 rated 2/5: revision offered"

    at(hub, 100 + 7 * 24)  # T5.7: feedback email at D+7 — Cy answered already, so none
    assert mail(hub)["cy"]["feedback_request"] == 0
    at(hub, 100 + 14 * 24)  # T5.8: links never clicked → download reminder at D+14
    assert mail(hub)["cy"]["download_reminder"] == 1
    at(hub, 100 + 30 * 24)  # T2: closed 30 days after delivery
    assert airtable_row(hub, TICKETS, "Ticket", "TICKET-2").fields["Status"] == "closed"

    # T5.9: 90 days without activity → reactivation email, once (the cooldown holds on a second run).
    hub.pin((T0 + timedelta(days=90)).isoformat())
    rule = hub.rt.config.rules["reactivation_d90"]
    run_rule(hub.rt, rule)
    run_rule(hub.rt, rule)
    hub.work()
    assert {w: m["reactivation"] for w, m in mail(hub).items()} == {"ana": 1, "ben": 0, "cy": 0}

    # Nothing else was sent, nothing failed, and the journey shows on the client's row.
    assert sum(sum(m.values()) for m in mail(hub).values()) == 3 + 2 + 2 + 1 + 1 + 1 + 1 + 1 + 1
    assert hub.failed() == []
    journey = json.loads(airtable_row(hub, CLIENTS, "Email", EMAILS["ben"]).fields["Journey"])
    assert [e["event"] for e in journey] == ["email_sent_welcome", "upload"]
