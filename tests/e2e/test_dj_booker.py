"""DJ Booker Pro, D2–D9 — the seed's segments at their boundaries, the re-engagement guardrails and
the weekly alert, through the real path: the DJ's import writes clients and bookings ("prestations")
to Firestore, the hub ingests them, aggregates each client's bookings, computes its segment with the
clock pinned to the seed's "today" (2026-01-14, D9) and writes everything back to Firestore;
messages are Mailchimp events, alerts go to the DJ's channel.

Every expected value below is worked out by hand in the comment next to it. Engine limits the pack
works around are listed in examples/dj_booker/README.md.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.base import Collection, Write
from hub import clock
from hub.engine import history
from hub.engine.compute import recompute
from hub.engine.schedule import run_rule
from tests.support.hubenv import Hub
from tests.support.receiver import Receiver, receiving

PACK = "examples/dj_booker"
LIST = "hubsandbx1"
CLIENTS = Collection("clients")
BOOKINGS = Collection("prestations")
OVERVIEW = Collection("crm_overview")
TODAY = datetime(2026, 1, 14, 9, 0, tzinfo=UTC)  # D9: the seed computes every day count from 2026-01-14

pytestmark = pytest.mark.usefixtures("needs_firestore")


@dataclass
class Client:
    """One line of clients_dj_clean.csv, with its lines of prestations_dj_clean.csv."""

    id: str
    name: str
    bookings: list[tuple[int, float]]  # (days before 2026-01-14, amount in €), most recent first
    email: bool = True
    consent: bool = True


def day(offset: int) -> str:
    """The date ``offset`` days after 2026-01-14 (negative: before)."""
    return (TODAY.date() + timedelta(days=offset)).isoformat()


def spread(count: int, last: int, amounts: list[float], every: int = 14) -> list[tuple[int, float]]:
    """``count`` bookings, the most recent ``last`` days ago, then one every ``every`` days before."""
    assert len(amounts) == count
    return [(last + i * every, amount) for i, amount in enumerate(amounts)]


def email_of(client_id: str) -> str:
    return f"{client_id}@example.com"


def at(hub: Hub, offset_days: int) -> None:
    hub.pin((TODAY + timedelta(days=offset_days)).isoformat())


def import_csv(hub: Hub, clients: list[Client]) -> None:
    """D1, as the DJ's app does it: clients first, then bookings, one document per line (the id is
    the client id / booking id, so a re-import overwrites); Firestore's changes reach the hub."""
    fs = hub.connector("firestore")
    fs.upsert_many(CLIENTS, [
        Write({"clientId": c.id, "name": c.name, "acceptsEmails": c.consent,
               **({"email": email_of(c.id)} if c.email else {})}, id=c.id)
        for c in clients
    ])
    hub.ingest("firestore", "clients", [c.id for c in clients], kind="created")
    rows = [
        Write({"bookingId": f"{c.id}-{n:02d}", "clientId": c.id, "clientName": c.name, "date": day(-ago),
               "amount": amount, "eventType": "soirée"}, id=f"{c.id}-{n:02d}")
        for c in clients for n, (ago, amount) in enumerate(c.bookings)
    ]
    if rows:
        fs.upsert_many(BOOKINGS, rows)
        hub.ingest("firestore", "prestations", [w.id for w in rows if w.id], kind="created")
    hub.work()


def doc(hub: Hub, client_id: str) -> dict[str, Any]:
    rec = hub.connector("firestore").get(CLIENTS, client_id)
    assert rec is not None, client_id
    return dict(rec.fields)


def mail(hub: Hub, ids: list[str]) -> dict[str, Counter[str]]:
    """The Mailchimp events (the D6 template emails) each client received."""
    mc = hub.connector("mailchimp")
    return {i: Counter(e["name"] for e in mc.events(LIST, email_of(i))) for i in ids}


def member(hub: Hub, client_id: str) -> dict[str, Any]:
    """The client's member in the Mailchimp audience."""
    (rec,) = hub.connector("mailchimp").find(Collection(LIST), "email_address", email_of(client_id))
    return dict(rec.fields)


def recompute_all(hub: Hub, entity: str) -> None:
    """The nightly recompute (also the app's "Recalculer segmentations"), then the write-backs."""
    recompute(entity)
    hub.work()


def dj_clicks_relancer(hub: Hub, client_id: str) -> None:
    """The app's "Relancer" button writes the time of the click on the client's document."""
    hub.connector("firestore").upsert_many(CLIENTS, [Write({"reengageRequestedAt": clock.now()}, id=client_id)])
    hub.ingest("firestore", "clients", [client_id])
    hub.work()


def decisions(hub: Hub, rule: str, client_id: str) -> list[tuple[str, str]]:
    """The rule's run history for one client, oldest first: (decision, reason)."""
    runs = history.read(hub.redis, rule=rule, record_key=f"client_id:{client_id}")
    return [(r["decision"], r["reason"]) for r in reversed(runs)]


@pytest.fixture
def ops(hub: Hub) -> Any:
    with receiving() as rec:
        hub.use(PACK, MAILCHIMP_LIST_ID=LIST, DJ_OPS_WEBHOOK_URL=rec.url)
        yield rec


# --- D2 at its boundaries, the seed's named clients, D3, D4, D5 and the D8 weekly alert ------------------------------

SEGMENT_CLIENTS = [
    # The seed's examples. ISTRES: 30 × 140 + 2 × 190 = 4,200 + 380 = 4,580 €; last booking 200 days ago.
    Client("istres-provence-handball", "ISTRES PROVENCE HANDBALL", spread(32, 200, [140.0] * 30 + [190.0] * 2)),
    # Gergom: 18 × 850 + 1,008 = 15,300 + 1,008 = 16,308 €; last booking 30 days ago.
    Client("gergom-events", "Gergom Events", spread(19, 30, [850.0] * 18 + [1008.0])),
    # ROOFTOP EMBRUN: 4 × 400 + 4 × 525 = 1,600 + 2,100 = 3,700 €; we choose a last booking 40 days ago.
    Client("rooftop-embrun", "ROOFTOP EMBRUN", spread(8, 40, [400.0] * 4 + [525.0] * 4)),
    # YELLOW MONKEYS: 7 × 350 = 2,450 €, 932 days inactive.
    Client("yellow-monkeys", "YELLOW MONKEYS", spread(7, 932, [350.0] * 7)),
    Client("gabriele-reine", "GABRIELE REINE", [(1052, 600.0)]),
    Client("tennis-club-de-grans", "TENNIS CLUB DE GRANS", [(631, 250.0), (700, 350.0)], email=False),
    # Last booking 89 / 90 / 91 and 364 / 365 / 366 days ago; one 500 € booking, so never VIP.
    *[Client(f"last-{n}", f"Last booking {n} days ago", [(n, 500.0)]) for n in (89, 90, 91, 364, 365, 366)],
    # Revenue 4,999 € vs 5,000 € with two bookings (last 200 days ago: dormant, not active).
    Client("revenue-4999", "Revenue 4999", [(200, 2500.0), (230, 2499.0)]),
    Client("revenue-5000", "Revenue 5000", [(200, 2500.0), (230, 2500.0)]),
    # 9 vs 10 bookings of 100 €, the last 400 days ago.
    Client("bookings-9", "Nine bookings", spread(9, 400, [100.0] * 9)),
    Client("bookings-10", "Ten bookings", spread(10, 400, [100.0] * 10)),
    # Active (< 90 d) and ≥ 5 bookings: 5 bookings with the last 89 vs 90 days ago; 4 bookings, 10 days ago.
    Client("active5-day89", "Five bookings, 89 days", spread(5, 89, [100.0] * 5)),
    Client("active5-day90", "Five bookings, 90 days", spread(5, 90, [100.0] * 5)),
    Client("active4", "Four bookings, 10 days", spread(4, 10, [100.0] * 4)),
    Client("prospect", "No booking yet", []),
]

# client → (segment, activity, days_inactive). VIP = ≥ 10 bookings OR ≥ 5,000 € OR (< 90 d AND ≥ 5 bookings);
# activity: active < 90 d, dormant 90–365 d, to_reengage > 365 d.
EXPECTED = {
    "istres-provence-handball": ("vip", "dormant", 200),  # 32 ≥ 10 bookings (4,580 € < 5,000 € alone would not do)
    "gergom-events": ("vip", "active", 30),  # 19 ≥ 10, and 16,308 ≥ 5,000
    "rooftop-embrun": ("vip", "active", 40),  # 8 < 10, 3,700 < 5,000, but 40 < 90 d and 8 ≥ 5
    "yellow-monkeys": ("to_reengage", "to_reengage", 932),  # 7 < 10, 2,450 < 5,000, 932 > 365
    "gabriele-reine": ("to_reengage", "to_reengage", 1052),  # 1 booking, 1,052 > 365
    "tennis-club-de-grans": ("to_reengage", "to_reengage", 631),  # 2 bookings, 631 > 365
    "last-89": ("active", "active", 89),  # 89 < 90
    "last-90": ("dormant", "dormant", 90),  # 90 ≤ 90 ≤ 365
    "last-91": ("dormant", "dormant", 91),
    "last-364": ("dormant", "dormant", 364),
    "last-365": ("dormant", "dormant", 365),  # 365 ≤ 365: still dormant
    "last-366": ("to_reengage", "to_reengage", 366),  # 366 > 365
    "revenue-4999": ("dormant", "dormant", 200),  # 2,500 + 2,499 = 4,999 < 5,000, 2 bookings, 200 d
    "revenue-5000": ("vip", "dormant", 200),  # 2,500 + 2,500 = 5,000 ≥ 5,000
    "bookings-9": ("to_reengage", "to_reengage", 400),  # 9 < 10, 900 €
    "bookings-10": ("vip", "to_reengage", 400),  # 10 ≥ 10 (VIP although inactive > 1 year)
    "active5-day89": ("vip", "active", 89),  # 89 < 90 and 5 ≥ 5
    "active5-day90": ("dormant", "dormant", 90),  # 90 is not < 90: 5 bookings, 500 € → not VIP
    "active4": ("active", "active", 10),  # 10 < 90 but 4 < 5
    "prospect": ("prospect", "prospect", None),  # no booking: no day count, no segment of the four
}


def test_d2_segments_at_the_boundaries_d3_overview_d8_weekly_alert(hub: Hub, ops: Receiver) -> None:
    at(hub, 0)
    import_csv(hub, SEGMENT_CLIENTS)
    recompute_all(hub, "client")

    got = {c.id: (doc(hub, c.id).get("segment"), doc(hub, c.id).get("activity"), doc(hub, c.id).get("daysInactive"))
           for c in SEGMENT_CLIENTS}
    assert got == EXPECTED
    assert {c.id for c in SEGMENT_CLIENTS if doc(hub, c.id).get("vip")} == {
        "istres-provence-handball", "gergom-events", "rooftop-embrun", "revenue-5000", "bookings-10", "active5-day89"}

    # D4 for ISTRES: 32 bookings, 4,580 €, prices 140–190 €, last booking 200 days before 2026-01-14 = 2025-06-28,
    # first booking 200 + 31 × 14 = 634 days before = 2024-04-20; average 4,580 / 32 = 143.125 → 143;
    # D5 potential: 4,580 × 365 / max(365, 634 − 200 = 434) = 1,671,700 / 434 = 3,851.8 → 3,852 € a year.
    istres = doc(hub, "istres-provence-handball")
    assert {k: istres[k] for k in ("bookingCount", "revenue", "minPrice", "maxPrice", "lastBooking", "firstBooking",
                                   "averagePrice", "reactivationPotential")} == {
        "bookingCount": 32, "revenue": 4580, "minPrice": 140, "maxPrice": 190, "lastBooking": "2025-06-28",
        "firstBooking": "2024-04-20", "averagePrice": 143, "reactivationPotential": 3852}
    gergom = doc(hub, "gergom-events")  # 19 bookings, 16,308 €, 850–1,008 €
    assert (gergom["bookingCount"], gergom["revenue"], gergom["minPrice"], gergom["maxPrice"]) == (19, 16308, 850, 1008)

    # D5: the "to re-engage" list by priority — VIP first, then bookings, revenue, inactivity:
    # bookings-10 (VIP) > bookings-9 (9) > yellow-monkeys (7) > tennis-club (2)
    # > gabriele-reine (1 booking, 600 €) > last-366 (1 booking, 500 €).
    inactive = [c.id for c in SEGMENT_CLIENTS if EXPECTED[c.id][1] == "to_reengage"]
    assert sorted(inactive, key=lambda i: -doc(hub, i)["priority"]) == [
        "bookings-10", "bookings-9", "yellow-monkeys", "tennis-club-de-grans", "gabriele-reine", "last-366"]

    # The stats reach Mailchimp as merge fields (for the D6 templates); the client without an email does not.
    merge = member(hub, "yellow-monkeys")["merge_fields"]
    assert {k: merge[k] for k in ("BOOKINGS", "REVENUE", "DAYSINACT", "SEGMENT")} == {
        "BOOKINGS": 7, "REVENUE": 2450, "DAYSINACT": 932, "SEGMENT": "to_reengage"}
    assert hub.connector("mailchimp").find(Collection(LIST), "email_address", email_of("tennis-club-de-grans")) == []

    # No message at import: nobody crossed a threshold, the dates came in with the bookings.
    assert sum(sum(m.values()) for m in mail(hub, [c.id for c in SEGMENT_CLIENTS if c.email]).values()) == 0

    # D3 overview, recomputed: 20 clients; VIP: istres, gergom, rooftop, revenue-5000, bookings-10, active5-day89 = 6;
    # active: gergom, rooftop, last-89, active5-day89, active4 = 5; dormant: istres, last-90, last-91, last-364,
    # last-365, revenue-4999, revenue-5000, active5-day90 = 8; to re-engage: yellow, gabriele, tennis, last-366,
    # bookings-9, bookings-10 = 6 (5 + 8 + 6 + 1 prospect = 20).
    # Revenue: 4,580 + 16,308 + 3,700 + 2,450 + 600 + 600 + 6 × 500 + 4,999 + 5,000 + 900 + 1,000 + 500 + 500 + 400
    # = 44,537 €. Bookings: 32 + 19 + 8 + 7 + 1 + 2 + 6 + 2 + 2 + 9 + 10 + 5 + 5 + 4 = 112.
    recompute_all(hub, "overview")
    (overview,) = list(hub.connector("firestore").iterate(OVERVIEW))
    assert {k: overview.fields.get(k) for k in ("name", "clientCount", "vipCount", "activeCount", "dormantCount",
                                                 "toReengageCount", "totalRevenue", "totalBookings")} == {
        "name": "main", "clientCount": 20, "vipCount": 6, "activeCount": 5, "dormantCount": 8, "toReengageCount": 6,
        "totalRevenue": 44537, "totalBookings": 112}

    # D8 weekly alert, Monday 2026-01-19, counted live (no recompute since): the 6 above, plus last-364 and
    # last-365, now 369 and 370 days > 365 = 8 clients to re-engage; VIP among them: bookings-10 (10 bookings)
    # = 1 — one message for the DJ, not one per client.
    at(hub, 5)
    assert run_rule(hub.rt, hub.rt.config.rules["weekly_reengage_alert"])["fired"] == 1
    hub.work()
    assert [b["text"] for b in ops.bodies] == [
        "8 clients to re-engage (1 VIP) — see the CRM's \"Clients à relancer\" list."]

    # D1: importing ISTRES's lines again (same client id, same booking ids) duplicates nothing.
    import_csv(hub, SEGMENT_CLIENTS[:1])
    fs = hub.connector("firestore")
    assert (len(list(fs.iterate(CLIENTS))), len(list(fs.iterate(BOOKINGS)))) == (20, 112)
    assert doc(hub, "istres-provence-handball")["bookingCount"] == 32
    assert hub.failed() == []


# --- D7: one re-engagement message per client per month, whichever rule sends it; D8 follow-up ---------------------

GUARD_CLIENTS = [
    # 12 × 100 €, last booking 365 days ago: VIP (12 ≥ 10) and dormant today, inactive > 1 year tomorrow.
    Client("lapsing-vip", "Lapsing VIP", spread(12, 365, [100.0] * 12, every=7)),
    # 10 × 100 €, 400 days: VIP and to re-engage already.
    Client("old-vip", "Old VIP", spread(10, 400, [100.0] * 10, every=7)),
    # 11 × 100 €, 500 days: VIP and to re-engage, but does not accept emails.
    Client("vip-no-consent", "VIP without consent", spread(11, 500, [100.0] * 11, every=7), consent=False),
]
GUARD_IDS = [c.id for c in GUARD_CLIENTS]


def test_d7_one_reengagement_per_month_then_d8_return(hub: Hub, ops: Receiver) -> None:
    at(hub, 0)
    import_csv(hub, GUARD_CLIENTS)
    assert doc(hub, "lapsing-vip")["activity"] == "dormant"
    assert sum(sum(m.values()) for m in mail(hub, GUARD_IDS).values()) == 0

    # 2026-01-15: the nightly recompute — lapsing-vip's last booking is 366 days old → to_reengage, and the
    # lapse rule sends it the VIP-inactive template.
    at(hub, 1)
    recompute_all(hub, "client")
    assert doc(hub, "lapsing-vip")["activity"] == "to_reengage"
    assert mail(hub, GUARD_IDS)["lapsing-vip"] == {"reengage_vip": 1}

    # Same day, the DJ presses "re-engage all inactive VIPs": old-vip gets its message; lapsing-vip matches too
    # but had one today (budget); vip-no-consent matches but does not accept emails.
    run_rule(hub.rt, hub.rt.config.rules["reengage_all_inactive_vips"])
    hub.work()
    assert mail(hub, GUARD_IDS) == {"lapsing-vip": {"reengage_vip": 1}, "old-vip": {"reengage_vip": 1},
                                    "vip-no-consent": {}}
    bulk = "reengage_all_inactive_vips"
    assert decisions(hub, bulk, "lapsing-vip") == [("skipped", "budget")]
    assert decisions(hub, bulk, "old-vip") == [("fired", "fired")]
    assert decisions(hub, bulk, "vip-no-consent") == [("skipped", "no marketing consent")]

    # 2026-01-30 (15 days later): the DJ clicks "Relancer" on lapsing-vip — still the same month: nothing sent.
    at(hub, 16)
    dj_clicks_relancer(hub, "lapsing-vip")
    assert mail(hub, GUARD_IDS)["lapsing-vip"] == {"reengage_vip": 1}
    assert decisions(hub, "reengage_on_request", "lapsing-vip") == [("skipped", "budget")]
    lapsing = doc(hub, "lapsing-vip")
    assert lapsing["reengageRequestedAt"] > lapsing["lastReengagedAt"]  # the app shows it as held back

    # 2026-02-14 (30 days after the message of 2026-01-15): the next month — allowed.
    at(hub, 31)
    dj_clicks_relancer(hub, "lapsing-vip")
    assert mail(hub, GUARD_IDS)["lapsing-vip"] == {"reengage_vip": 2}
    assert decisions(hub, "reengage_on_request", "lapsing-vip") == [("skipped", "budget"), ("fired", "fired")]
    # D8 follow-up log: what was sent, when, and why.
    assert [(e["event"], e["at"], e["details"]["trigger"]) for e in doc(hub, "lapsing-vip")["followups"]] == [
        ("email_sent_vip_inactive", "2026-01-15T09:00:00Z", "lapse"),
        ("email_sent_vip_inactive", "2026-02-14T09:00:00Z", "request")]
    lapsing = doc(hub, "lapsing-vip")
    assert (lapsing["lastMessage"], lapsing["reengageCount"], lapsing["revenueAtReengagement"]) == (
        "vip_inactive", 2, 1200)  # 12 × 100 €
    assert lapsing["lastReengagedAt"] == TODAY + timedelta(days=31)

    # 2026-02-23: lapsing-vip books again (900 €, today). D8: its return is dated, and its inactivity before
    # returning is kept: last booking before = 2025-01-14, 405 days before 2026-02-23 (365 + 40), minus 0 days
    # since the new booking = 405. Reactivation revenue 1,200 + 900 − 1,200 = 900 €.
    at(hub, 40)
    hub.connector("firestore").upsert_many(BOOKINGS, [Write(
        {"bookingId": "lapsing-vip-new", "clientId": "lapsing-vip", "clientName": "Lapsing VIP", "date": day(40),
         "amount": 900.0, "eventType": "gala"}, id="lapsing-vip-new")])
    hub.ingest("firestore", "prestations", ["lapsing-vip-new"], kind="created")
    hub.work()
    lapsing = doc(hub, "lapsing-vip")
    assert (lapsing["activity"], lapsing["segment"], lapsing["bookingCount"], lapsing["revenue"]) == (
        "active", "vip", 13, 2100)
    assert (lapsing["reactivatedAt"], lapsing["inactiveDaysBeforeReturn"]) == (TODAY + timedelta(days=40), 405)
    assert [b["text"] for b in ops.bodies] == [
        "A re-engaged client booked again after 405 days without a booking (13 bookings now)."]
    # The reactivation revenue reads reactivatedAt, which the rule has just written: the nightly recompute
    # (computed fields are not recomputed after a rule's own writes) brings it to 2,100 − 1,200 = 900 €.
    recompute_all(hub, "client")
    assert doc(hub, "lapsing-vip")["reactivationRevenue"] == 900

    # D8 KPIs in the overview: re-engaged 2 (lapsing-vip, old-vip), reactivated 1 → 1 / 2 = 50 %,
    # reactivation revenue 900 €, average inactivity before return 405 days.
    recompute_all(hub, "overview")
    (overview,) = list(hub.connector("firestore").iterate(OVERVIEW))
    assert {k: overview.fields.get(k) for k in ("reengagedCount", "reactivatedCount", "reactivationRate",
                                                 "reactivationRevenue", "avgInactivityBeforeReturn")} == {
        "reengagedCount": 2, "reactivatedCount": 1, "reactivationRate": 50, "reactivationRevenue": 900,
        "avgInactivityBeforeReturn": 405}
    # In the Mailchimp audience, the client who does not accept emails is unsubscribed (no campaign either).
    assert {i: member(hub, i)["status"] for i in GUARD_IDS} == {
        "lapsing-vip": "subscribed", "old-vip": "subscribed", "vip-no-consent": "unsubscribed"}
    assert hub.failed() == []


# --- D7: the gentle reminder to dormant clients, every two months -------------------------------------------------

DORMANT = [Client("dormant-client", "Dormant client", [(200, 400.0)])]  # last booking 200 days ago: dormant


def test_d7_gentle_reminder_every_two_months(hub: Hub, ops: Receiver) -> None:
    rule = "gentle_reminder_dormant"
    at(hub, 0)
    import_csv(hub, DORMANT)
    run_rule(hub.rt, hub.rt.config.rules[rule])
    hub.work()
    assert mail(hub, ["dormant-client"])["dormant-client"] == {"gentle_reminder": 1}
    # 45 days later (245 days inactive, still dormant): the monthly budget (30 d) would allow it, the
    # two-month cooldown does not.
    at(hub, 45)
    run_rule(hub.rt, hub.rt.config.rules[rule])
    hub.work()
    assert mail(hub, ["dormant-client"])["dormant-client"] == {"gentle_reminder": 1}
    # 60 days after the first (260 days inactive, still dormant): two months have passed — due again.
    at(hub, 60)
    run_rule(hub.rt, hub.rt.config.rules[rule])
    hub.work()
    assert mail(hub, ["dormant-client"])["dormant-client"] == {"gentle_reminder": 2}
    assert decisions(hub, rule, "dormant-client") == [("fired", "fired"), ("skipped", "cooldown"), ("fired", "fired")]


# --- D2/D4 with prices in euros and cents ----------------------------------------------------------------------------

CENTS = [
    Client("cents-5000", "Cents adding up to 5,000", [(200, 2499.5), (230, 2500.5)]),  # 2,499.50 + 2,500.50 = 5,000.00
    Client("cents-562", "Cents", [(200, 462.5), (230, 100.0)]),  # 462.50 + 100.00 = 562.50
]


def test_d2_revenue_with_cents(hub: Hub, ops: Receiver) -> None:
    at(hub, 0)
    import_csv(hub, CENTS)
    # The segment is right either way: 5,000.00 ≥ 5,000 → VIP; 562.50 → dormant (200 days).
    assert (doc(hub, "cents-5000")["segment"], doc(hub, "cents-562")["segment"]) == ("vip", "dormant")
    assert doc(hub, "cents-562")["revenue"] == 562.5
    assert doc(hub, "cents-5000").get("revenue") == 5000
