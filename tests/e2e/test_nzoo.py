"""N'zoo Immo, N1-N6 — scores, strategies and the automatic mode, on a pinned clock, through the real
path: contacts and reservations (deals) written in HubSpot, the hub's sync, recompute and workers,
scores written back to HubSpot, Mailchimp events, signed SMS/push webhooks.

Today is pinned to 2026-06-01 12:00 UTC; a client's last activity is its latest reservation date
(`booked_on`), so "d" below is exactly the days between that date and today.

Hand computations (r = reservations, all statuses; c = cancelled ones; s = money of the confirmed and
completed ones; d = days since the latest reservation):
  N1 risk = min(100, A + B + 5c), A = 40/30/20/10/0 for d > 90/60/30/14/else, B = 30/20/10/0 for s > 1000/500/100/else
  N2 engagement = round_half_up(clamp(100 - P + min(r / max(d / 30, 1) × 10, 30), 0, 100)),
                  P = 60/40/20/10/0 for d > 90/60/30/14/else
  N4 strategy: s > 500 and d > 14 → VIP (high_value_client_retention); d > 30 → inactive (inactive_client_reminder);
               d < 7 → welcome (welcome_new_client); else seasonal (seasonal_promotion)
  N6 follow-up, for consenting clients: any strategy but seasonal (welcome only on the first reservation), or
               seasonal when risk >= 70 or engagement < 40.
Each case's inputs are in CASES, its arithmetic next to its expected values in EXPECTED.

The engagement score cannot go below 40 (100 - 60 + a non-negative bonus), so its clamp at 0 never
bites: `floor` shows the lowest reachable value. The clamp at 100 bites in d14, d30, new6, risky, ...
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.base import Collection, Write
from hub.engine import history
from hub.engine.compute import recompute
from hub.engine.schedule import run_rule
from tests.support.hubenv import Hub
from tests.support.receiver import Receiver, receiving

PACK = "examples/nzoo"
LIST = "hubsandbx1"
CONTACTS = Collection("contacts")
DEALS = Collection("deals")
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TODAY = NOW.date()
SECRET = "whsec_" + base64.b64encode(b"nzoo-outbound-secret-for-tests!!").decode()
STAGE = {
    "pending": "appointmentscheduled",
    "confirmed": "contractsent",
    "completed": "closedwon",
    "cancelled": "closedlost",
}
VIP, INACTIVE, WELCOME, SEASONAL = (
    "high_value_client_retention",
    "inactive_client_reminder",
    "welcome_new_client",
    "seasonal_promotion",
)

# case: (days since the latest reservation, [(amount, status)] latest first, extra contact properties)
CASES: dict[str, tuple[int, list[tuple[float, str]], dict[str, str]]] = {
    "d14": (14, [(100, "completed")], {}),
    "d15": (15, [(101, "confirmed")], {}),
    "d30": (30, [(250, "completed"), (250, "completed")], {}),
    "d31": (31, [(300, "completed"), (201, "confirmed")], {}),
    "d60": (60, [(500, "completed"), (500, "completed")], {}),
    "d61": (61, [(1001, "completed")], {"nzoo_preferred_channel": "sms", "phone": "+243810000061"}),
    "d90": (90, [(50, "completed")], {"nzoo_marketing_consent": "false"}),
    "d91": (91, [(1200, "completed")], {}),
    "cap": (120, [(1000, "completed"), (1000, "completed")] + [(300, "cancelled")] * 8, {}),
    "freq": (100, [(10, "completed")] * 12, {}),
    "new6": (6, [(80, "confirmed")], {"nzoo_preferred_channel": "push", "nzoo_app_user_id": "app-new6"}),
    "new7": (7, [(80, "completed")], {}),
    "risky": (20, [(150, "completed")] + [(40, "cancelled")] * 10, {}),
    "back2": (2, [(60, "completed"), (60, "completed")], {}),
    "floor": (900, [(90, "completed")], {}),
}
# case: (risk, engagement, strategy, follow-up strategy or None)
EXPECTED: dict[str, tuple[int, int, str, str | None]] = {
    # r1 c0 s100:  risk 0+0+0 = 0;              eng 100-0 + min(1/1×10, 30) = 110 → 100;   s ≤ 500, d 7..30
    "d14": (0, 100, SEASONAL, None),
    # r1 c0 s101:  risk 10+10 = 20;             eng 100-10 + 1/1×10 = 100
    "d15": (20, 100, SEASONAL, None),
    # r2 c0 s500:  risk 10+10 = 20;             eng 100-10 + 2/1×10 = 110 → 100;           s = 500 is not > 500
    "d30": (20, 100, SEASONAL, None),
    # r2 c0 s501:  risk 20+20 = 40;             eng 100-20 + 2/(31/30)×10 = 99.35 → 99
    "d31": (40, 99, VIP, VIP),
    # r2 c0 s1000: risk 20+20 = 40;             eng 100-20 + 2/(60/30)×10 = 90
    "d60": (40, 90, VIP, VIP),
    # r1 c0 s1001: risk 30+30 = 60;             eng 100-40 + 1/(61/30)×10 = 64.92 → 65;   prefers SMS
    "d61": (60, 65, VIP, VIP),
    # r1 c0 s50:   risk 30+0 = 30;              eng 100-40 + 1/(90/30)×10 = 63.33 → 63;   no consent: no follow-up
    "d90": (30, 63, INACTIVE, None),
    # r1 c0 s1200: risk 40+30 = 70 (high risk); eng 100-60 + 1/(91/30)×10 = 43.30 → 43
    "d91": (70, 43, VIP, VIP),
    # r10 c8 s2000: risk 40+30+8×5 = 110 → 100 (cap); eng 100-60 + min(10/(120/30)×10, 30) = 65
    "cap": (100, 65, VIP, VIP),
    # r12 c0 s120: risk 40+10 = 50;             eng 100-60 + min(12/(100/30)×10 = 36, 30) = 70 (frequency cap)
    "freq": (50, 70, INACTIVE, INACTIVE),
    # r1 c0 s80:   risk 0;                      eng 100-0 + 1/1×10 = 110 → 100;           d < 7, first booking; push
    "new6": (0, 100, WELCOME, WELCOME),
    # r1 c0 s80:   risk 0;                      eng 110 → 100;                            d = 7 is not < 7
    "new7": (0, 100, SEASONAL, None),
    # r11 c10 s150: risk 10+10+10×5 = 70;       eng 100-10 + min(11/1×10, 30) = 120 → 100; seasonal but high risk
    "risky": (70, 100, SEASONAL, SEASONAL),
    # r2 c0 s120:  risk 0+10 = 10;              eng 100-0 + 2/1×10 = 120 → 100;           not a first booking
    "back2": (10, 100, WELCOME, None),
    # r1 c0 s90:   risk 40+0 = 40;              eng 100-60 + 1/(900/30)×10 = 40.33 → 40  (the lowest reachable)
    "floor": (40, 40, INACTIVE, INACTIVE),
}


def email(case: str) -> str:
    return f"{case}@nzoo.example"


def load(hub: Hub, cases: dict[str, tuple[int, list[tuple[float, str]], dict[str, str]]]) -> dict[str, str]:
    """The operator's clients and their reservations, in HubSpot; HubSpot's webhooks tell the hub."""
    hs = hub.connector("hubspot")
    contacts = hs.upsert_many(
        CONTACTS,
        [
            Write({"email": email(c), "firstname": c.capitalize(), "nzoo_marketing_consent": "true", **extra})
            for c, (_, _, extra) in cases.items()
        ],
    )
    hub.ingest("hubspot", "contacts", [r.id for r in contacts], kind="created")
    hub.work()
    deals = []
    for c, (days, bookings, _) in cases.items():
        for i, (amount, status) in enumerate(bookings):  # the latest is `days` ago, the others 10 days apart
            deals.append(
                Write(
                    {
                        "nzoo_reservation_id": f"R-{c}-{i}",
                        "nzoo_client_email": email(c),
                        "dealname": "Salle Gombe",
                        "amount": str(amount),
                        "dealstage": STAGE[status],
                        "nzoo_booked_on": (TODAY - timedelta(days=days + 10 * i)).isoformat(),
                    }
                )
            )
    created = hs.upsert_many(DEALS, deals)
    hub.ingest("hubspot", "deals", [r.id for r in created], kind="created")
    hub.work()
    return {str(r.fields["email"]).split("@")[0]: r.id for r in contacts}


def contacts(hub: Hub) -> dict[str, dict[str, Any]]:
    return {str(r.fields["email"]).split("@")[0]: r.fields for r in hub.connector("hubspot").iterate(CONTACTS)}


def mail(hub: Hub, cases: list[str]) -> dict[str, Counter[str]]:
    mc = hub.connector("mailchimp")
    return {c: Counter(e["name"] for e in mc.events(LIST, email(c))) for c in cases}


def as_int(value: Any) -> int | None:
    return None if value in (None, "") else int(float(value))


def auto_mode(hub: Hub) -> dict[str, Any]:
    assert hub.rt is not None
    counts = run_rule(hub.rt, hub.rt.config.rules["auto_mode"])
    hub.work()
    return counts


def operator_edits(hub: Hub, coll: Collection, record_id: str, props: dict[str, str]) -> None:
    """Someone edits a record in HubSpot; HubSpot's webhook tells the hub."""
    hub.connector("hubspot").upsert_many(coll, [Write(props, id=record_id)])
    hub.ingest("hubspot", coll.name, [record_id])
    hub.work()


@pytest.fixture
def gateways(hub: Hub) -> Any:
    with receiving() as rec:
        hub.use(
            PACK,
            MAILCHIMP_LIST_ID=LIST,
            NZOO_SMS_WEBHOOK_URL=f"{rec.url}/sms",
            NZOO_SMS_WEBHOOK_SECRET=SECRET,
            NZOO_PUSH_WEBHOOK_URL=f"{rec.url}/push",
            NZOO_PUSH_WEBHOOK_SECRET=SECRET,
        )
        hub.pin(NOW.isoformat())
        yield rec


def test_scores_strategies_and_follow_ups(hub: Hub, gateways: Receiver) -> None:
    ids = load(hub, CASES)
    # The sync recomputed each client as its reservations arrived; the nightly recompute, on the same
    # pinned clock, finds nothing left to change.
    assert recompute("contact", None) == {"records": 15, "changed": 0}
    hub.work()

    # N1, N2, N4 (and the aggregates they read), written back to HubSpot's contact properties.
    props = contacts(hub)
    got = {
        c: (as_int(p["nzoo_risk_score"]), as_int(p["nzoo_engagement_score"]), p["nzoo_strategy"])
        for c, p in props.items()
    }
    assert got == {c: e[:3] for c, e in EXPECTED.items()}
    assert [as_int(props["cap"][k]) for k in ("nzoo_reservations", "nzoo_cancellations", "nzoo_days_inactive")] == [
        10,
        8,
        120,
    ]
    assert float(props["cap"]["nzoo_total_spent"]) == 2000  # 1000 + 1000 (the 8 × 300 cancelled are not spent)
    assert float(props["cap"]["nzoo_lifetime_value"]) == 2000  # N3: the client's total value
    assert props["d31"]["nzoo_last_activity"] == (TODAY - timedelta(days=31)).isoformat()
    assert [c for c, p in props.items() if p["nzoo_high_risk"] == "true"] == ["d91", "cap", "risky"]  # risk >= 70
    assert [c for c, p in props.items() if p["nzoo_low_engagement"] == "true"] == []  # engagement >= 40 always

    # N6 one automatic-mode run: a follow-up for each client who needs one, sent by its strategy (N5).
    counts = auto_mode(hub)
    wanted = {c: e[3] for c, e in EXPECTED.items() if e[3] is not None}
    assert counts["fired"] == len(wanted) == 9
    props = contacts(hub)
    assert {c: p["nzoo_follow_up_strategy"] for c, p in props.items() if p.get("nzoo_follow_up_strategy")} == wanted
    assert {p["nzoo_follow_up_status"] for c, p in props.items() if c in wanted} == {"sent"}
    assert {p["nzoo_follow_up_sent_at"] for c, p in props.items() if c in wanted} == {"2026-06-01T12:00:00.000Z"}
    events = mail(hub, list(CASES))
    assert {c: dict(n) for c, n in events.items() if n} == {c: {s: 1} for c, s in wanted.items()}
    (vip_event,) = hub.connector("mailchimp").events(LIST, email("d61"))  # the template variables
    assert {
        k: vip_event["properties"][k]
        for k in ("first_name", "reservations", "total_spent", "days_inactive", "risk_score", "engagement_score")
    } == {
        "first_name": "D61",
        "reservations": "1",
        "total_spent": "1001",
        "days_inactive": "61",
        "risk_score": "60",
        "engagement_score": "65",
    }
    assert [json.loads(props["d61"]["nzoo_journey"])[0]["event"]] == ["follow_up_sent"]

    # The operator's list: one HubSpot task per follow-up, on the contact, priority from the strategy.
    tasks = list(hub.connector("hubspot").iterate(Collection("tasks")))
    assert sorted(t.fields["hs_task_subject"] for t in tasks) == sorted(f"Relance IA : {s}" for s in wanted.values())
    assert Counter(t.fields["hs_task_priority"] for t in tasks) == {"HIGH": 6, "MEDIUM": 3}  # 5 VIP + risky (70)

    # Channels: the VIP who prefers SMS gets one through the SMS gateway, the new client a push.
    sent = [(r["path"], r["json"]["type"], r["json"]["data"]) for r in gateways.requests]
    assert sorted(sent) == [
        ("/hook/push", "follow_up.push", {"user": "app-new6", "template": WELCOME}),
        ("/hook/sms", "follow_up.sms", {"to": "+243810000061", "template": VIP, "first_name": "D61"}),
    ]

    # The same hour again, and the next hour: nobody gets a second follow-up (sent, and within cooldown).
    assert auto_mode(hub).get("fired", 0) == 0
    hub.pin((NOW + timedelta(hours=1)).isoformat())
    assert auto_mode(hub).get("fired", 0) == 0
    assert sum(sum(n.values()) for n in mail(hub, list(CASES)).values()) == 9

    # Suivi Annulation: the operator cancels d15's confirmed reservation in HubSpot → an empathetic
    # follow-up, and d15's scores move: s = 0, c = 1 → risk 10 (d 15) + 0 + 5 = 15; engagement unchanged
    # (100 - 10 + 1/1×10 = 100).
    (d15_deal,) = [d for d in hub.connector("hubspot").iterate(DEALS) if d.fields["nzoo_reservation_id"] == "R-d15-0"]
    operator_edits(hub, DEALS, d15_deal.id, {"dealstage": STAGE["cancelled"]})
    assert mail(hub, ["d15"])["d15"] == {"cancellation_follow_up": 1}
    d15 = contacts(hub)["d15"]
    assert (as_int(d15["nzoo_risk_score"]), as_int(d15["nzoo_engagement_score"]), d15["nzoo_follow_up_status"]) == (
        15,
        100,
        "sent",
    )

    # By hand: the operator schedules a seasonal promotion for d14 in HubSpot; its strategy rule sends it.
    operator_edits(
        hub,
        CONTACTS,
        ids["d14"],
        {
            "nzoo_follow_up_strategy": SEASONAL,
            "nzoo_follow_up_status": "pending",
            "nzoo_follow_up_scheduled_at": hub_now(hours=1),
        },
    )
    assert mail(hub, ["d14"])["d14"] == {SEASONAL: 1}
    assert contacts(hub)["d14"]["nzoo_follow_up_status"] == "sent"

    # N7: freq books again (today) → a conversion dated on the contact; its scores move: d = 0, r = 13,
    # s = 130 → risk 0 + 10 = 10; engagement 100 + min(13×10, 30) = 130 → 100; strategy d < 7 → welcome.
    (booking,) = hub.connector("hubspot").upsert_many(
        DEALS,
        [
            Write(
                {
                    "nzoo_reservation_id": "R-freq-new",
                    "nzoo_client_email": email("freq"),
                    "dealname": "Salle Gombe",
                    "amount": "10",
                    "dealstage": STAGE["confirmed"],
                    "nzoo_booked_on": TODAY.isoformat(),
                }
            )
        ],
    )
    hub.ingest("hubspot", "deals", [booking.id], kind="created")
    hub.work()
    freq = contacts(hub)["freq"]
    assert freq["nzoo_follow_up_converted_at"] == hub_now(hours=1)
    assert (as_int(freq["nzoo_risk_score"]), as_int(freq["nzoo_engagement_score"]), freq["nzoo_strategy"]) == (
        10,
        100,
        WELCOME,
    )

    # A day later the nightly recompute moves clients across the boundaries by time alone:
    # d14 → d = 15: risk 10 + 0 (s = 100) = 10; engagement 100 - 10 + 1/1×10 = 100; still seasonal.
    # d30 → d = 31: risk 20 + 10 (s = 500) = 30; engagement 100 - 20 + 2/(31/30)×10 = 99.35 → 99; now inactive.
    hub.pin((NOW + timedelta(days=1)).isoformat())
    recompute("contact", None)
    hub.work()
    props = contacts(hub)
    assert {
        c: (as_int(props[c]["nzoo_risk_score"]), as_int(props[c]["nzoo_engagement_score"]), props[c]["nzoo_strategy"])
        for c in ("d14", "d30")
    } == {
        "d14": (10, 100, SEASONAL),
        "d30": (30, 99, INACTIVE),
    }
    assert hub.failed() == []


def hub_now(*, hours: int = 0) -> str:
    return (NOW + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_daily_limit_caps_one_automatic_run(hub: Hub, gateways: Receiver) -> None:
    """55 VIP clients need a follow-up (each: one 1,500 reservation 120 days ago → risk 40 + 30 = 70,
    s > 500 and d > 14 → VIP); the seed's daily limit is 50."""
    many = {f"vip{i:02d}": (120, [(1500.0, "completed")], {}) for i in range(55)}
    load(hub, many)
    first = auto_mode(hub)
    assert (first["matched"], first["fired"], first["skipped"]) == (55, 50, 5)
    skipped = [e["reason"] for e in history.read(hub.redis, rule="auto_mode", limit=100) if e["decision"] == "skipped"]
    assert skipped == ["daily_limit"] * 5  # the 5 over the limit, and for no other reason
    props = contacts(hub)
    assert Counter(p.get("nzoo_follow_up_status") for p in props.values()) == {"sent": 50, None: 5}
    assert len(list(hub.connector("hubspot").iterate(Collection("tasks")))) == 50
    assert sum(sum(n.values()) for n in mail(hub, list(many)).values()) == 50

    hub.pin((NOW + timedelta(hours=3)).isoformat())  # later the same day: the limit still holds
    later = auto_mode(hub)
    assert (later["matched"], later.get("fired", 0)) == (5, 0)

    hub.pin(datetime(2026, 6, 2, 9, 0, tzinfo=UTC).isoformat())  # a new day (Kinshasa, UTC+1): the other 5
    next_day = auto_mode(hub)
    assert (next_day["matched"], next_day["fired"]) == (5, 5)
    props = contacts(hub)
    assert Counter(p.get("nzoo_follow_up_status") for p in props.values()) == {"sent": 55}
    assert sum(sum(n.values()) for n in mail(hub, list(many)).values()) == 55
    assert hub.failed() == []
