"""Alforis (seed 003), SPEC A1-A8 — the ready-made workflows on a pinned clock, through the real path:
HubSpot deals, contacts, companies and tasks (the stand-in, driven as its UI would be), Airtable
contracts and invoices, webhooks → workers, Mailchimp events and tags, the team channels and the
signed outbound webhooks.

- A2 stale proposals (> 30 days without activity): deals idle 29 / 30 / 31 days with amounts
  around 50 k€, the scheduled scan run twice the same day, then the next day.
- A2 lead nurturing D0 / D3 / D7 / D14: the clock pinned just before and at each step; a lead that
  becomes an opportunity and one that unsubscribes before D7 get neither D7 nor D14.
- A2 onboarding when a deal is signed, once although the stage change is delivered twice; the A6
  envelopes of the deal's life.
- A8 payment reminders D-3 / D+7 / D+30; A7 renewal alerts D-90 / D-60 / D-30 and tacit renewal.
- A4 task reminders D-1 / D0 / D+1; A5 lead score, stuck deals, inactive clients, weekly report;
  A7 MRR / ARR; A1 the website form's signed webhook.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from connectors.base import Collection, Write
from connectors.mailchimp_wire import subscriber_hash
from hub.engine.live import sign_standard_webhook
from hub.engine.schedule import run_rule
from tests.support.hubenv import Hub
from tests.support.receiver import Receiver, receiving

PACK = "examples/alforis"
BASE = "appHubSandbox0001"
LIST = "hubsandbx1"
DEALS, CONTACTS, TASKS = Collection("deals"), Collection("contacts"), Collection("tasks")
CONTRACTS, INVOICES = Collection("Contrats", base=BASE), Collection("Factures", base=BASE)
SECRET = "whsec_" + "YWxmb3Jpcy1vdXRib3VuZC1zZWNyZXQtZm9yLXRlc3Rz"
CHANNELS = ("sales", "managers", "support", "finance")


# -- the team's channels and the other tools, all one loopback receiver ---------------------------------
@pytest.fixture
def team(hub: Hub) -> Iterator[Receiver]:
    with receiving() as rec:
        root = rec.url.rsplit("/", 1)[0]
        env = {f"ALFORIS_{c.upper()}_WEBHOOK_URL": f"{root}/{c}" for c in CHANNELS}
        for target in ("events", "invoicing", "reports"):
            env[f"ALFORIS_{target.upper()}_WEBHOOK_URL"] = f"{root}/{target}"
            env[f"ALFORIS_{target.upper()}_WEBHOOK_SECRET"] = SECRET
        hub.use(PACK, AIRTABLE_BASE_ID=BASE, MAILCHIMP_LIST_ID=LIST, ALFORIS_FORM_WEBHOOK_SECRET=SECRET, **env)
        yield rec


def said(rec: Receiver, channel: str) -> list[str]:
    """Messages posted to one team channel."""
    return [r["json"]["text"] for r in rec.requests if r["path"] == f"/{channel}"]


def envelopes(rec: Receiver, target: str) -> list[dict[str, Any]]:
    """Outbound webhooks received by one tool, each checked against its Standard Webhooks signature."""
    out = []
    for r in rec.requests:
        if r["path"] != f"/{target}":
            continue
        h = {k.lower(): v for k, v in r["headers"].items()}
        expected = sign_standard_webhook(SECRET, h["webhook-id"], int(h["webhook-timestamp"]), r["body"])
        assert h["webhook-signature"] == expected
        out.append(r["json"])
    return out


# -- HubSpot, as its UI would be used ------------------------------------------------------------------
def hs_create(hub: Hub, coll: Collection, rows: list[dict[str, Any]]) -> list[str]:
    """Records created in HubSpot; its webhook tells the hub."""
    created = hub.connector("hubspot").upsert_many(coll, [Write(r) for r in rows])
    ids = [r.id for r in created]
    hub.ingest("hubspot", coll.name, ids, kind="created")
    hub.work()
    return ids


def hs_edit(hub: Hub, coll: Collection, oid: str, props: dict[str, Any], *, deliveries: int = 1) -> None:
    """Someone edits a record in HubSpot; the webhook arrives ``deliveries`` times."""
    hub.connector("hubspot").upsert_many(coll, [Write(props, id=oid)])
    for _ in range(deliveries):
        hub.ingest("hubspot", coll.name, [oid])
        hub.work()


def hs_get(hub: Hub, coll: Collection, oid: str) -> dict[str, Any]:
    rec = hub.connector("hubspot").get(coll, oid)
    assert rec is not None
    return rec.fields


def tasks_on(hub: Hub, object_type: str, oid: str) -> list[dict[str, Any]]:
    """The HubSpot tasks associated with one record (read back through the associations API)."""
    hs = hub.connector("hubspot")
    page = hs.client.crm.associations.v4.basic_api.get_page(object_type, oid, "tasks")
    ids = [str(a.to_object_id) for a in page.results]
    return sorted((r.fields for r in hs.get_many(TASKS, ids)), key=lambda f: f["hs_task_subject"])


def all_tasks(hub: Hub) -> list[dict[str, Any]]:
    return [r.fields for r in hub.connector("hubspot").iterate(TASKS)]


# -- Mailchimp -------------------------------------------------------------------------------------------
def events(hub: Hub, email: str) -> Counter[str]:
    return Counter(e["name"] for e in hub.connector("mailchimp").events(LIST, email))


def tags(hub: Hub, email: str) -> set[str]:
    member = hub.connector("mailchimp").get(Collection(LIST), subscriber_hash(email))
    assert member is not None
    return {t["name"] for t in member.fields.get("tags") or []}


def scan(hub: Hub, *rule_ids: str) -> None:
    """What the cron does for these scheduled rules at the pinned time (`hub run RULE`)."""
    assert hub.rt is not None
    for rid in rule_ids:
        run_rule(hub.rt, hub.rt.config.rules[rid])
    hub.work()


# ==================================================================================================
# A2 workflow 1 — stale proposals
# ==================================================================================================
MON = datetime(2027, 3, 1, 8, 0, tzinfo=UTC)  # a Monday, 8:00: the scan's slot ("0 8 * * 1-5")
# name: (HubSpot stage, amount €, owner, days since the last activity — None: never any, so the deal's age)
STALE_DEALS: dict[str, tuple[str, int, str, int | None]] = {
    "Aurore": ("presentationscheduled", 50_001, "7001", 31),  # > 30 d and > 50 k€: task, rep, manager
    "Boreal": ("presentationscheduled", 50_000, "7002", 31),  # > 30 d, exactly 50 k€: task, rep — no manager
    "Cirrus": ("presentationscheduled", 49_999, "7001", 45),  # > 30 d, under 50 k€: task, rep
    "Dorade": ("presentationscheduled", 120_000, "7002", 30),  # exactly 30 d: not yet (31 the next day)
    "Estran": ("presentationscheduled", 90_000, "7003", 29),  # 29 d: no (30 the next day: still no)
    "Fjord": ("decisionmakerboughtin", 200_000, "7001", 40),  # idle, but in negotiation: not this workflow
    "Givre": ("closedwon", 75_000, "7002", 100),  # signed: no
    "Halo": ("presentationscheduled", 30_000, "7003", None),  # no activity ever, created 35 d ago: task, rep
}


def stale_setup(hub: Hub) -> dict[str, str]:
    hub.pin(MON.isoformat())
    rows = []
    for name, (stage, amount, owner, idle) in STALE_DEALS.items():
        props = {"dealname": name, "dealstage": stage, "amount": amount, "hubspot_owner_id": owner,
                 "createdate": MON - timedelta(days=35 if idle is None else 120)}
        if idle is not None:
            props["notes_last_updated"] = MON - timedelta(days=idle)
        rows.append(props)
    return dict(zip(STALE_DEALS, hs_create(hub, DEALS, rows), strict=True))


def stale_tasks(hub: Hub, ids: dict[str, str]) -> dict[str, list[tuple[str, str, str]]]:
    """Per deal: its reminder tasks in HubSpot as (subject, priority, owner)."""
    out = {}
    for name, oid in ids.items():
        found = [(t["hs_task_subject"], t["hs_task_priority"], t.get("hubspot_owner_id"))
                 for t in tasks_on(hub, "deals", oid)]
        if found:
            out[name] = found
    return out


def task(name: str) -> tuple[str, str, str]:
    return (f"Relancer le client : {name}", "HIGH", STALE_DEALS[name][2])


def rep_message(name: str, days: int) -> str:
    _, amount, owner, _ = STALE_DEALS[name]
    return (f"Relance : « {name} » ({amount} €) est en proposition sans activité depuis {days} jours "
            f"(commercial {owner}).")


def manager_message(name: str, days: int) -> str:
    _, amount, owner, _ = STALE_DEALS[name]
    return (f"Proposition de plus de 50 k€ sans activité depuis {days} jours : « {name} » ({amount} €, "
            f"commercial {owner}).")


def test_a2_stale_proposals_around_30_days_and_50k(hub: Hub, team: Receiver) -> None:
    ids = stale_setup(hub)
    scan(hub, "stale_proposal")
    # Monday: idle > 30 d in proposal = Aurore (31), Boreal (31), Cirrus (45), Halo (35 d old, never any
    # activity). Not Dorade (30 is not > 30), Estran (29), Fjord (negotiation), Givre (won).
    assert stale_tasks(hub, ids) == {n: [task(n)] for n in ("Aurore", "Boreal", "Cirrus", "Halo")}
    assert sorted(said(team, "sales")) == sorted([rep_message("Aurore", 31), rep_message("Boreal", 31),
                                                  rep_message("Cirrus", 45), rep_message("Halo", 35)])
    # Managers: amount > 50,000 € — Aurore (50,001) only; Boreal's 50,000 is not over, Cirrus 49,999 neither.
    assert said(team, "managers") == [manager_message("Aurore", 31)]
    assert len(all_tasks(hub)) == 4, "every task is on its deal, none elsewhere"

    # The same day again (a duplicated cron run at 8:00, then one at 15:00): nothing new.
    scan(hub, "stale_proposal")
    hub.pin((MON + timedelta(hours=7)).isoformat())
    scan(hub, "stale_proposal")
    assert (len(all_tasks(hub)), len(said(team, "sales")), len(said(team, "managers"))) == (4, 4, 1)

    # Tuesday 8:00: Dorade is now 31 days idle (120,000 € > 50 k€: task, rep and manager); Estran is at 30;
    # the four reminded yesterday are within their 7-day cooldown.
    hub.pin((MON + timedelta(days=1)).isoformat())
    scan(hub, "stale_proposal")
    assert stale_tasks(hub, ids) == {n: [task(n)] for n in ("Aurore", "Boreal", "Cirrus", "Dorade", "Halo")}
    assert said(team, "sales")[4:] == [rep_message("Dorade", 31)]
    assert said(team, "managers") == [manager_message("Aurore", 31), manager_message("Dorade", 31)]
    assert len(all_tasks(hub)) == 5
    assert hub.failed() == []


def test_a2_stale_proposal_reminded_again_after_its_7_day_cooldown(hub: Hub, team: Receiver) -> None:
    ids = stale_setup(hub)
    scan(hub, "stale_proposal")  # Monday: Aurore, Boreal, Cirrus, Halo (as above)
    hub.pin((MON + timedelta(days=1)).isoformat())
    scan(hub, "stale_proposal")  # Tuesday: Dorade
    # Next Monday 8:00 (7 days on the hub clock): the four of last Monday are out of their cooldown and
    # still idle (38, 38, 52, 42 days) → reminded again; Estran is now 29 + 7 = 36 days idle → first
    # reminder; Dorade (reminded Tuesday) is still within its cooldown.
    hub.pin((MON + timedelta(days=7)).isoformat())
    scan(hub, "stale_proposal")
    counts = {name: len(found) for name, found in stale_tasks(hub, ids).items()}
    assert counts == {"Aurore": 2, "Boreal": 2, "Cirrus": 2, "Dorade": 1, "Estran": 1, "Halo": 2}


# ==================================================================================================
# A2 workflow 3 — lead nurturing D0 / D3 / D7 / D14
# ==================================================================================================
T0 = datetime(2027, 3, 1, 10, 0, tzinfo=UTC)
PEOPLE = {  # who: (lifecycle stage, marketing consent)
    "ana": ("lead", True),  # stays a lead: D0, D3, D7, D14
    "ben": ("lead", True),  # becomes an opportunity on day 5: D0, D3 only
    "cy": ("lead", True),  # unsubscribes in Mailchimp on day 5: D0, D3 only
    "dan": ("lead", False),  # no marketing consent: nothing
    "eve": ("customer", True),  # already a client: not nurtured
}
NURTURE = ("nurture_d0", "nurture_d3", "nurture_d7", "nurture_d14")


def email(who: str) -> str:
    return f"{who}@prospect.example"


def at(hub: Hub, delta: timedelta) -> None:
    hub.pin((T0 + delta).isoformat())
    hub.work()


def nurture_sent(hub: Hub) -> dict[str, dict[str, int]]:
    return {who: {n: c for n, c in events(hub, email(who)).items() if n in NURTURE} for who in PEOPLE}


def journey(hub: Hub, oid: str) -> list[tuple[str, str]]:
    raw = hs_get(hub, CONTACTS, oid).get("hub_journey") or "[]"
    return [(e["event"], e["at"]) for e in json.loads(raw)]


def test_a2_lead_nurturing_d0_d3_d7_d14(hub: Hub, team: Receiver) -> None:
    hub.pin(T0.isoformat())
    rows = [{"email": email(who), "firstname": who.capitalize(), "lifecyclestage": stage, "company": f"{who} SAS",
             "hub_marketing_consent": consent, "hubspot_owner_id": "7001"}
            for who, (stage, consent) in PEOPLE.items()]
    ids = dict(zip(PEOPLE, hs_create(hub, CONTACTS, rows), strict=True))
    hub.ingest("hubspot", "contacts", list(ids.values()), kind="created")  # HubSpot retries its webhook
    hub.work()
    # D0, now, once: the three consenting leads; not Dan (no consent) nor Eve (a client).
    d0 = {"nurture_d0": 1}
    assert nurture_sent(hub) == {"ana": d0, "ben": d0, "cy": d0, "dan": {}, "eve": {}}
    assert "prospect" in tags(hub, email("ana"))

    at(hub, timedelta(days=3) - timedelta(minutes=1))  # nothing early
    assert nurture_sent(hub) == {"ana": d0, "ben": d0, "cy": d0, "dan": {}, "eve": {}}
    at(hub, timedelta(days=3))  # D3, exactly 72 h after the lead arrived
    d3 = {"nurture_d0": 1, "nurture_d3": 1}
    assert nurture_sent(hub) == {"ana": d3, "ben": d3, "cy": d3, "dan": {}, "eve": {}}

    at(hub, timedelta(days=5))
    hs_edit(hub, CONTACTS, ids["ben"], {"lifecyclestage": "opportunity"})  # Ben is no longer a lead
    mc = hub.connector("mailchimp")  # Cy clicks "unsubscribe" in an email; Mailchimp's webhook tells the hub
    mc.upsert_many(Collection(LIST), [Write({"email_address": email("cy"), "status": "unsubscribed"})])
    hub.ingest("mailchimp", LIST, [subscriber_hash(email("cy"))])
    hub.work()
    cy = hs_get(hub, CONTACTS, ids["cy"])  # A3: the unsubscribe shows in HubSpot and withdraws the consent
    assert (cy["hub_email_status"], cy["hub_marketing_consent"]) == ("unsubscribed", "false")

    at(hub, timedelta(days=7) - timedelta(minutes=1))
    assert nurture_sent(hub)["ana"] == d3
    at(hub, timedelta(days=7))  # D7: Ana only
    d7 = {**d3, "nurture_d7": 1}
    assert nurture_sent(hub) == {"ana": d7, "ben": d3, "cy": d3, "dan": {}, "eve": {}}

    at(hub, timedelta(days=14) - timedelta(minutes=1))
    assert nurture_sent(hub)["ana"] == d7
    assert all_tasks(hub) == []
    at(hub, timedelta(days=14))  # D14: Ana's sales call (a HubSpot task on her contact) and its email
    d14 = {**d7, "nurture_d14": 1}
    assert nurture_sent(hub) == {"ana": d14, "ben": d3, "cy": d3, "dan": {}, "eve": {}}
    (call,) = tasks_on(hub, "contacts", ids["ana"])
    assert (call["hs_task_subject"], call["hs_task_priority"], call["hubspot_owner_id"]) == (
        "Appel commercial (nurturing J+14) : ana SAS", "HIGH", "7001")
    assert len(all_tasks(hub)) == 1

    # Her timeline in HubSpot: each step at its exact time (T0, T0 + 3 d, + 7 d, + 14 d).
    iso = lambda d: (T0 + timedelta(days=d)).isoformat().replace("+00:00", "Z")  # noqa: E731
    assert journey(hub, ids["ana"]) == [("nurture_d0_welcome", iso(0)), ("nurture_d3_use_cases", iso(3)),
                                        ("nurture_d7_demo_invite", iso(7)), ("nurture_d14_sales_call", iso(14))]
    assert [e for e, _ in journey(hub, ids["cy"])] == ["nurture_d0_welcome", "nurture_d3_use_cases", "unsubscribed"]
    assert hub.failed() == []


# ==================================================================================================
# A2 workflow 2 — onboarding when a deal is signed; A6 envelopes
# ==================================================================================================
def test_a2_onboarding_once_when_a_deal_is_signed(hub: Hub, team: Receiver) -> None:
    t = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
    hub.pin(t.isoformat())
    zoe = "zoe@cabinet-zeta.example"
    (contact_id,) = hs_create(hub, CONTACTS, [{"email": zoe, "firstname": "Zoé", "lifecyclestage": "lead",
                                               "hub_marketing_consent": True, "hubspot_owner_id": "7003"}])
    (deal_id,) = hs_create(hub, DEALS, [{"dealname": "Cabinet Zeta — mandat", "amount": 65_000,
                                         "dealstage": "contractsent", "hubspot_owner_id": "7003",
                                         "hub_contact_email": zoe, "hub_organisation_domain": "cabinet-zeta.example"}])
    assert tasks_on(hub, "deals", deal_id) == []

    hub.pin((t + timedelta(hours=2)).isoformat())
    hs_edit(hub, DEALS, deal_id, {"dealstage": "closedwon"}, deliveries=2)  # signed; the webhook comes twice

    # The welcome email and the tag, once.
    assert events(hub, zoe)["onboarding_welcome"] == 1
    assert {"Nouveau Client 2027", "client"} <= tags(hub, zoe) and "prospect" not in tags(hub, zoe)
    # 5 onboarding tasks on the deal, for its rep, due 1, 2, 3, 7 and 30 days after the signature (11:00).
    due = lambda d: (t + timedelta(hours=2, days=d)).strftime("%Y-%m-%dT%H:%M:%S.000Z")  # noqa: E731
    found = [(f["hs_task_subject"], f["hs_timestamp"], f["hs_task_priority"], f["hubspot_owner_id"])
             for f in tasks_on(hub, "deals", deal_id)]
    assert found == [
        ("Onboarding 1/5 — appel de bienvenue : Cabinet Zeta — mandat", due(1), "HIGH", "7003"),
        ("Onboarding 2/5 — envoyer le contrat signé et les accès : Cabinet Zeta — mandat", due(2), "MEDIUM", "7003"),
        ("Onboarding 3/5 — paramétrer le compte client : Cabinet Zeta — mandat", due(3), "MEDIUM", "7003"),
        ("Onboarding 4/5 — planifier la formation : Cabinet Zeta — mandat", due(7), "MEDIUM", "7003"),
        ("Onboarding 5/5 — point de suivi à 30 jours : Cabinet Zeta — mandat", due(30), "LOW", "7003"),
    ]
    assert len(all_tasks(hub)) == 5
    assert said(team, "support") == ["Nouveau client signé : « Cabinet Zeta — mandat » (65000 €, commercial 7003). "
                                     "Onboarding lancé : 5 tâches dans HubSpot."]
    # Zoé is now a customer in HubSpot, so her nurturing stops: D0 only, no D3 nor D7 email.
    assert hs_get(hub, CONTACTS, contact_id)["lifecyclestage"] == "customer"
    at_d7 = t + timedelta(days=7)
    hub.pin(at_d7.isoformat())
    hub.work()
    assert {n: c for n, c in events(hub, zoe).items() if n in NURTURE} == {"nurture_d0": 1}

    # A6: one signed envelope {type, timestamp, data} per event of the deal's life.
    deal = {"id": deal_id, "name": "Cabinet Zeta — mandat", "amount": 65000, "owner": "7003", "close_date": None,
            "organisation": "cabinet-zeta.example"}
    sent = envelopes(team, "events")
    assert [(e["type"], e["data"]) for e in sent] == [
        ("deal.created", {**deal, "stage": "contract_sent"}),
        ("deal.updated", {**deal, "stage": "won", "changed": ["stage"]}),
        ("deal.won", {**deal, "stage": "won"}),
    ]
    assert [e["timestamp"] for e in sent] == ["2027-03-01T09:00:00Z", "2027-03-01T11:00:00Z", "2027-03-01T11:00:00Z"]
    assert hub.failed() == []


# ==================================================================================================
# A8 — payment reminders D-3 (friendly), D+7 (firm), D+30 (formal notice)
# ==================================================================================================
def test_a8_payment_reminders(hub: Hub, team: Receiver) -> None:
    today = date(2027, 3, 1)
    hub.pin("2027-03-01T09:00:00Z")  # the reminders' slot ("0 9 * * *")
    due = {  # invoice: (days from today to its due date, status)
        "2027-F-001": (3, "unpaid"),  # D-3 → friendly
        "2027-F-002": (4, "unpaid"),  # D-4 → nothing yet
        "2027-F-003": (-6, "unpaid"),  # D+6 → nothing (the D-3 one went out long ago)
        "2027-F-004": (-7, "unpaid"),  # D+7 → firm, marked overdue
        "2027-F-005": (-29, "partially_paid"),  # D+29 → still the firm one
        "2027-F-006": (-30, "overdue"),  # D+30 → formal notice, finance told
        "2027-F-007": (-7, "paid"),  # paid: nothing
    }
    at_conn = hub.connector("airtable")
    rows = at_conn.upsert_many(INVOICES, [
        Write({"Facture": n, "Échéance": (today + timedelta(days=d)).isoformat(), "Statut": s, "Montant HT": 1000,
               "Email facturation": "compta@client.example"}) for n, (d, s) in due.items()])
    hub.ingest("airtable", "Factures", [r.id for r in rows], kind="created", base=BASE)
    hub.work()
    scan(hub, "invoice_reminder_d_minus_3", "invoice_reminder_d7", "invoice_formal_notice_d30")
    scan(hub, "invoice_reminder_d_minus_3", "invoice_reminder_d7", "invoice_formal_notice_d30")  # twice: once

    # Amount TTC = 1000 × (1 + 20/100) = 1200.0 (VAT rate defaulted to 20 %).
    sent = sorted((e["data"]["invoice"], e["type"], e["data"]["amount_ttc"]) for e in envelopes(team, "invoicing"))
    assert sent == [("2027-F-001", "invoice.reminder.friendly", 1200),
                    ("2027-F-004", "invoice.reminder.firm", 1200),
                    ("2027-F-005", "invoice.reminder.firm", 1200),
                    ("2027-F-006", "invoice.formal_notice", 1200)]
    status = {r.fields["Facture"]: (r.fields.get("Statut"), r.fields.get("Dernière relance"))
              for r in at_conn.iterate(INVOICES)}
    assert status == {"2027-F-001": ("unpaid", "friendly"), "2027-F-002": ("unpaid", None),
                      "2027-F-003": ("unpaid", None), "2027-F-004": ("overdue", "firm"),
                      "2027-F-005": ("overdue", "firm"), "2027-F-006": ("overdue", "formal_notice"),
                      "2027-F-007": ("paid", None)}
    assert said(team, "finance") == [
        "Mise en demeure envoyée : facture 2027-F-006 (1200.00 € TTC), échue depuis 30 jours."]
    assert hub.failed() == []


# ==================================================================================================
# A7 — contract renewal alerts D-90 / D-60 / D-30, tacit renewal at D0
# ==================================================================================================
def test_a7_contract_renewals(hub: Hub, team: Receiver) -> None:
    today = date(2027, 3, 1)
    ends = {  # contract: (days until its end, tacit renewal)
        "C-90": (90, False),  # D-90 → alert
        "C-91": (91, False),  # not yet
        "C-60": (60, False),  # D-60 → task "prepare the renewal" + alert
        "C-30": (30, False),  # D-30 → the client's renewal proposal (Mailchimp) + alert
        "C-0T": (0, True),  # ends today, tacit renewal → renewed for a year
        "C-0N": (0, False),  # ends today, no tacit renewal → expired
    }
    hub.pin("2027-03-01T06:00:00Z")  # the end-of-contract slot ("0 6 * * *")
    at_conn = hub.connector("airtable")
    rows = at_conn.upsert_many(CONTRACTS, [
        Write({"Contrat": c, "Début": (today + timedelta(days=d) - timedelta(days=364)).isoformat(),
               "Fin": (today + timedelta(days=d)).isoformat(), "Statut": "active", "Tacite reconduction": tacit,
               "Montant mensuel": 800, "Organisation (domaine)": "client.example", "Email client": "dg@client.example",
               "Commercial (HubSpot)": "7002", "Type": "abonnement"}) for c, (d, tacit) in ends.items()])
    hub.ingest("airtable", "Contrats", [r.id for r in rows], kind="created", base=BASE)
    hub.work()
    scan(hub, "contract_end")
    hub.pin("2027-03-01T08:00:00Z")  # the alerts' slot ("0 8 * * *")
    scan(hub, "contract_renewal_d90", "contract_renewal_d60", "contract_renewal_d30")

    # C-0T ran 2026-03-02 → 2027-03-01: renewed 2027-03-02 → 2028-03-01 (the end date one year on).
    contracts = {r.fields["Contrat"]: r.fields for r in at_conn.iterate(CONTRACTS)}
    renewed = contracts["C-0T-2027"]
    assert (renewed["Début"], renewed["Fin"], renewed["Statut"], renewed["Renouvelle"], renewed["Montant mensuel"],
            renewed.get("Tacite reconduction")) == ("2027-03-02", "2028-03-01", "active", "C-0T", 800, True)
    assert (contracts["C-0T"]["Statut"], contracts["C-0N"]["Statut"]) == ("renewed", "expired")
    # 06:00 the ends, 08:00 the alerts: D-90 (ends today + 90 = 2027-05-30), D-60 (2027-04-30), D-30.
    assert said(team, "sales") == [
        "Contrat C-0T (client.example) reconduit tacitement.",
        "Contrat C-0N (client.example) arrivé à échéance, non reconduit.",
        "Échéance dans 90 jours : contrat C-90 (client.example, 800 €/mois, fin le 2027-05-30).",
        "Préparer le renouvellement : contrat C-60 (client.example), fin le 2027-04-30.",
        "Proposition de renouvellement envoyée : contrat C-30 (client.example).",
    ]
    (prep,) = all_tasks(hub)
    assert (prep["hs_task_subject"], prep["hubspot_owner_id"]) == (
        "Préparer le renouvellement du contrat C-60 (client.example)", "7002")
    assert events(hub, "dg@client.example") == Counter({"renewal_proposal": 1})
    assert hub.failed() == []


# ==================================================================================================
# A4 task reminders, A5 anomalies, lead score and reports, A7 MRR / ARR
# ==================================================================================================
def test_a4_task_reminders(hub: Hub, team: Receiver) -> None:
    now = datetime(2027, 3, 10, 8, 0, tzinfo=UTC)  # the reminders' slot ("0 8 * * *")
    hub.pin(now.isoformat())
    rows = {  # subject: (due, status, priority, owner)
        "Envoyer la proposition": (now + timedelta(days=1, hours=6), "NOT_STARTED", "MEDIUM", "7001"),  # D-1
        "Appeler le DAF": (now + timedelta(hours=8), "IN_PROGRESS", "MEDIUM", "7001"),  # D0
        "Relancer le juridique": (now - timedelta(hours=22), "NOT_STARTED", "HIGH", "7002"),  # D+1, high
        "Mettre à jour le CRM": (now - timedelta(days=1), "WAITING", "LOW", "7003"),  # D+1, low
        "Signer l'avenant": (now - timedelta(hours=22), "COMPLETED", "HIGH", "7002"),  # done: nothing
        "Préparer le comité": (now + timedelta(days=3), "NOT_STARTED", "HIGH", "7001"),  # D-3: nothing
        "Ancienne tâche": (now - timedelta(days=2), "NOT_STARTED", "HIGH", "7001"),  # D+2: nothing more
    }
    hub.connector("hubspot").upsert_many(TASKS, [
        Write({"hs_task_subject": s, "hs_timestamp": due, "hs_task_status": st, "hs_task_priority": pr,
               "hubspot_owner_id": owner}) for s, (due, st, pr, owner) in rows.items()])
    scan(hub, "task_due_tomorrow", "task_due_today", "task_overdue")
    scan(hub, "task_due_tomorrow", "task_due_today", "task_overdue")  # the same slot again: nothing new
    assert sorted(said(team, "sales")) == sorted([
        "Rappel : « Envoyer la proposition » est due demain (commercial 7001).",
        "Aujourd'hui : « Appeler le DAF » (commercial 7001).",
        "En retard : « Relancer le juridique » était due hier (commercial 7002).",
        "En retard : « Mettre à jour le CRM » était due hier (commercial 7003).",
    ])
    assert said(team, "managers") == ["Tâche prioritaire en retard : « Relancer le juridique » (commercial 7002)."]
    assert hub.failed() == []


def test_a5_lead_score_anomalies_and_reports_a7_mrr(hub: Hub, team: Receiver) -> None:
    from hub.engine.compute import recompute

    now = datetime(2027, 3, 1, 8, 0, tzinfo=UTC)  # Monday 8:00
    hub.pin(now.isoformat())
    # Deals first (an open one for Acme, a signed one for Bety, and two idle ones for the anomaly scan).
    hs_create(hub, DEALS, [
        {"dealname": "Acme — audit", "dealstage": "qualifiedtobuy", "amount": 20_000, "hub_organisation_domain":
         "acme.example", "notes_last_updated": now - timedelta(days=5), "hubspot_owner_id": "7001"},
        {"dealname": "Bety — mandat", "dealstage": "closedwon", "amount": 40_000, "hub_organisation_domain":
         "bety.example", "notes_last_updated": now - timedelta(days=100), "hubspot_owner_id": "7002"},
        {"dealname": "Cobalt — fonds", "dealstage": "decisionmakerboughtin", "amount": 70_000,
         "notes_last_updated": now - timedelta(days=61), "hubspot_owner_id": "7003"},  # open, 61 d idle: stuck
        {"dealname": "Delta — conseil", "dealstage": "qualifiedtobuy", "amount": 10_000,
         "notes_last_updated": now - timedelta(days=60), "hubspot_owner_id": "7003"},  # 60 d: not over 60
    ])
    at_conn = hub.connector("airtable")  # Bety's active subscription, and an ended one
    rows = at_conn.upsert_many(CONTRACTS, [
        Write({"Contrat": "B-1", "Organisation (domaine)": "bety.example", "Montant mensuel": 800, "Statut": "active",
               "Début": "2026-06-01", "Fin": "2027-05-31"}),
        Write({"Contrat": "B-0", "Organisation (domaine)": "bety.example", "Montant mensuel": 500,
               "Statut": "expired", "Début": "2025-06-01", "Fin": "2026-05-31"})])
    hub.ingest("airtable", "Contrats", [r.id for r in rows], kind="created", base=BASE)
    hub.work()
    acme, bety = hs_create(hub, Collection("companies"), [
        {"name": "Acme", "domain": "acme.example", "numberofemployees": 300, "lifecyclestage": "opportunity",
         "notes_last_updated": now - timedelta(days=10), "hubspot_owner_id": "7001"},
        {"name": "Bety", "domain": "bety.example", "numberofemployees": 60, "lifecyclestage": "customer",
         "notes_last_updated": now - timedelta(days=100), "hubspot_owner_id": "7002"},
    ])
    recompute("organisation")  # the nightly recompute (the company's webhook already asked for one)
    hub.work()
    # Lead score: Acme = 30 (300 employees ≥ 250) + 30 (contact 10 d ago ≤ 30) + 20 (an open deal) + 0 = 80;
    # Bety = 20 (60 ≥ 50) + 0 (contact 100 d ago > 90) + 0 (no open deal) + 20 (a deal won) = 40.
    # MRR: Bety's active contract 800 €/month (the expired one does not count); ARR = 800 × 12 = 9600.
    fields = ("hub_lead_score", "hub_open_deals", "hub_won_deals", "hub_won_revenue", "hub_mrr", "hub_arr")
    got = {name: tuple(hs_get(hub, Collection("companies"), oid).get(f) for f in fields)
           for name, oid in (("acme", acme), ("bety", bety))}
    assert got == {"acme": ("80", "1", "0", "0", "0", "0"), "bety": ("40", "0", "1", "40000", "800", "9600")}
    # A lead score of 70 or more for a non-client: the sales channel hears of Acme, once.
    assert said(team, "sales") == ["Lead chaud : Acme a un score de 80/100 (commercial 7001)."]
    created = [e["data"]["name"] for e in envelopes(team, "events") if e["type"] == "organisation.created"]
    assert created == ["Acme", "Bety"]  # A6 organisation.created

    scan(hub, "deal_stuck_60d", "client_inactive_90d", "weekly_report")
    # Stuck: open deals idle > 60 d = Cobalt (61); not Delta (60), nor Bety's (100 d, but won).
    assert said(team, "managers") == ["Deal bloqué : « Cobalt — fonds » (70000 €, étape negotiation) sans activité "
                                      "depuis 61 jours (commercial 7003)."]
    # Inactive client: a customer with no contact for > 90 d = Bety (100 d) → a task on the company, and sales.
    assert said(team, "sales")[1:] == ["Client inactif : Bety, aucun contact depuis 100 jours (commercial 7002)."]
    (follow_up,) = tasks_on(hub, "companies", bety)
    assert (follow_up["hs_task_subject"], follow_up["hubspot_owner_id"]) == ("Reprendre contact : Bety", "7002")
    assert [(e["type"], e["data"]) for e in envelopes(team, "reports")] == [
        ("report.weekly", {"period_end": "2027-03-01"})]
    assert hub.failed() == []


# ==================================================================================================
# A1 — an external webhook: the website's contact form
# ==================================================================================================
def test_a1_website_form_creates_a_lead_once(hub: Hub, team: Receiver) -> None:
    import time

    from hub.app import create_app

    hub.pin("2027-03-01T10:00:00Z")
    assert hub.rt is not None
    app = create_app(hub.rt.settings, config_dir=hub.rt.config_dir, conn=hub.redis).test_client()

    def post(msg_id: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        ts = int(time.time())
        headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts), "Content-Type": "application/json",
                   "webhook-signature": sign_standard_webhook(SECRET, msg_id, ts, body)}
        for _ in range(2):  # the website retries: the second delivery is acknowledged and dropped
            assert app.post("/webhooks/in/website_form", data=body, headers=headers).status_code in (200, 202)
        hub.work()

    form = {"email": "lea@fintech.example", "first_name": "Léa", "company": "Fintech SA", "consent": True,
            "message": "Une démo ?"}
    post("msg_form_1", form)
    (lea,) = hub.connector("hubspot").find(CONTACTS, "email", "lea@fintech.example")
    assert (lea.fields["lifecyclestage"], lea.fields["hub_lead_source"], lea.fields["hub_marketing_consent"],
            lea.fields["company"]) == ("lead", "website", "true", "Fintech SA")
    assert events(hub, "lea@fintech.example") == Counter({"nurture_d0": 1})  # her nurturing starts
    post("msg_form_2", {**form, "message": "Toujours intéressée"})  # she writes again: known, no new lead
    assert events(hub, "lea@fintech.example") == Counter({"nurture_d0": 1})
    assert [e for e, _ in journey(hub, lea.id)] == ["nurture_d0_welcome", "website_form"]
    assert said(team, "sales") == ["Nouvelle demande via le site web (Fintech SA)."] * 2
    assert hub.failed() == []
