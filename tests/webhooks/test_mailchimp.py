"""Mailchimp intake: the secret URL, the validation GET, nested form parsing, each event type
mapped to a member source event, and members changed in the Mailchimp stand-in (its user-action
routes) arriving through its real webhook sender at the app served on a loopback port — one
normalised event per change, also when deliveries come twice or out of order."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from hub.runtime import Runtime
from hub.settings import Settings
from tests.support.mailchimp import MailchimpSandbox, connector_for
from tests.support.procs import wait_for
from tests.webhooks.test_app import MC_SECRET, make_app, queued, served, write_config
from webhooks.mailchimp import parse_form, setup

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
URL = f"/webhooks/mailchimp/{MC_SECRET}"


def md5(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def form(kind: str, fired_at: str = "2024-05-01 10:00:00", **data: str) -> bytes:
    fields = [("type", kind), ("fired_at", fired_at)]
    fields += [(f"data[{k.replace('__', '][')}]", v) for k, v in data.items()]
    return urlencode(fields).encode()


@pytest.fixture
def client(redis_url: str, redis_conn: redis.Redis, tmp_path: Path) -> FlaskClient:
    return make_app(redis_url, write_config(tmp_path / "config"), redis_conn).test_client()


def events(conn: redis.Redis) -> list[dict[str, Any]]:
    return [e for provider, evs in queued(conn) for e in evs if provider == "mailchimp"]


# -- the secret URL and the validation GET ------------------------------------------------------
def test_validation_get_needs_the_secret(client: FlaskClient, redis_conn: redis.Redis) -> None:
    assert client.get(URL).status_code == 200
    wrong = client.get("/webhooks/mailchimp/guess")
    assert wrong.status_code == 401 and "secret" in wrong.get_json()["error"]
    assert MC_SECRET not in wrong.get_data(as_text=True)
    assert client.get("/webhooks/mailchimp/").status_code == 404


def test_a_post_with_a_wrong_secret_enqueues_nothing(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body = form("subscribe", email="ann@example.com", list_id="l1")
    for secret in ("guess", MC_SECRET[:-1], MC_SECRET + "x"):
        assert client.post(f"/webhooks/mailchimp/{secret}", data=body, headers=FORM).status_code == 401
    assert queued(redis_conn) == []


def test_unconfigured_secret_refuses_everything(redis_url: str, redis_conn: redis.Redis, tmp_path: Path) -> None:
    app = make_app(redis_url, write_config(tmp_path / "c"), redis_conn, MAILCHIMP_WEBHOOK_SECRET="")
    resp = app.test_client().get("/webhooks/mailchimp/anything")
    assert resp.status_code == 503 and "MAILCHIMP_WEBHOOK_SECRET" in resp.get_json()["error"]


# -- parsing ------------------------------------------------------------------------------------
def test_nested_keys_become_dicts() -> None:
    raw = form("profile", email="ann@example.com", list_id="l1", merges__FNAME="Ann", merges__LNAME="",
               merges__GROUPINGS__0__name="Interests", merges__GROUPINGS__0__groups="A, B")  # fmt: skip
    nested, pairs = parse_form(raw)
    assert nested["data"]["merges"] == {"FNAME": "Ann", "LNAME": "",
                                        "GROUPINGS": {"0": {"name": "Interests", "groups": "A, B"}}}  # fmt: skip
    assert nested["type"] == "profile" and len(pairs) == 8


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"type=subscribe&data[merges=1", "malformed form key"),
        (b"type=subscribe&data[email]=a@b.c&data[email][x]=1", "which is a value"),
        (b"type=subscribe&data[merges][A]=1&data[merges]=2", "both a value and a group"),
        (b"fired_at=2024-05-01+10%3A00%3A00&data[email]=a@b.c&data[list_id]=l", "missing event type"),
        (form("subscribe", fired_at="May 1st", email="a@b.c", list_id="l"), "fired_at"),
        (form("subscribe", list_id="l1"), "without data[email]"),
        (form("upemail", old_email="a@b.c", list_id="l1"), "without data[new_email]"),
        (form("unsubscribe", email="a@b.c"), "without data[list_id]"),
        (b"\xff\xfe=1", "not UTF-8"),
    ],
)
def test_malformed_forms_are_400(client: FlaskClient, redis_conn: redis.Redis, body: bytes, says: str) -> None:
    resp = client.post(URL, data=body, headers=FORM)
    assert resp.status_code == 400 and says in resp.get_json()["error"], resp.get_json()
    assert queued(redis_conn) == []


def test_json_is_415(client: FlaskClient, redis_conn: redis.Redis) -> None:
    resp = client.post(URL, data=b'{"type": "subscribe"}', headers={"Content-Type": "application/json"})
    assert resp.status_code == 415 and FORM["Content-Type"] in resp.get_json()["error"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (form("subscribe", id="8a25ff1d98", email="Ann@Example.com", list_id="l1", merges__FNAME="Ann"),
         ("l1", md5("ann@example.com"), "unknown", ["status"])),
        (form("unsubscribe", action="unsub", reason="manual", email="ann@example.com", list_id="l1"),
         ("l1", md5("ann@example.com"), "updated", ["status"])),
        (form("profile", email="ann@example.com", list_id="l1", merges__FNAME="Anne"),
         ("l1", md5("ann@example.com"), "updated", [])),
        (form("cleaned", campaign_id="c1", reason="hard", email="ann@example.com", list_id="l1"),
         ("l1", md5("ann@example.com"), "updated", ["status"])),
        (form("upemail", new_id="x", new_email="anne@example.com", old_email="ann@example.com", list_id="l1"),
         ("l1", md5("anne@example.com"), "updated", ["email_address"])),
    ],
)  # fmt: skip
def test_member_events(client: FlaskClient, redis_conn: redis.Redis, body: bytes, expected: tuple[Any, ...]) -> None:
    resp = client.post(URL, data=body, headers=FORM)
    assert resp.status_code == 200 and resp.get_json()["enqueued"] == 1
    (event,) = events(redis_conn)
    assert (event["coll"], event["id"], event["kind"], event["fields"]) == expected
    assert event["system"] == "mailchimp" and event["base"] == ""
    assert event["at_ms"] == 1714557600000  # 2024-05-01 10:00:00 GMT
    if b"upemail" in body:
        assert event["previous_id"] == md5("ann@example.com")


def test_campaign_events_are_acknowledged_without_a_job(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body = form("campaign", id="5aa2102003", subject="News", status="sent", reason="", list_id="l1")
    resp = client.post(URL, data=body, headers=FORM)
    assert resp.status_code == 200 and resp.get_json()["enqueued"] == 0
    assert queued(redis_conn) == []


def test_a_redelivered_event_is_enqueued_once(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body = form("profile", email="ann@example.com", list_id="l1", merges__FNAME="Anne")
    assert client.post(URL, data=body, headers=FORM).get_json()["enqueued"] == 1
    again = client.post(URL, data=body, headers=FORM).get_json()
    assert (again["enqueued"], again["duplicates"]) == (0, 1)
    later = form("profile", "2024-05-01 10:00:07", email="ann@example.com", list_id="l1", merges__FNAME="Anne")
    other = form("profile", email="ann@example.com", list_id="l1", merges__FNAME="Annie")  # same second
    assert client.post(URL, data=later, headers=FORM).get_json()["enqueued"] == 1
    assert client.post(URL, data=other, headers=FORM).get_json()["enqueued"] == 1
    assert len(queued(redis_conn)) == 3


# -- through the stand-in -----------------------------------------------------------------------
@pytest.fixture
def wired(mailchimp_standin: MailchimpSandbox, redis_url: str, redis_conn: redis.Redis,
          tmp_path: Path) -> Iterator[tuple[MailchimpSandbox, Flask, Runtime]]:  # fmt: skip
    sb = mailchimp_standin
    config = write_config(tmp_path / "config", sb.list_id)
    env = {**sb.env, "REDIS_URL": redis_url, "MAILCHIMP_WEBHOOK_SECRET": MC_SECRET}
    rt = Runtime(Settings(env=env), config_dir=config, conn=redis_conn)
    rt.use_connector("mailchimp", connector_for(sb, redis_conn))
    yield sb, make_app(redis_url, config, redis_conn), rt


def test_setup_registers_the_secret_url_once_and_replaces_a_rotated_one(
    wired: Any, redis_url: str, redis_conn: redis.Redis
) -> None:
    sb, hub_app, rt = wired
    with served(hub_app) as base:
        first = setup(rt, base + "/")
        entry = first["lists"][sb.list_id]
        assert entry["created"] is True and first["sources"] == ["user", "admin", "api"]
        assert MC_SECRET not in str(first)
        assert setup(rt, base)["lists"][sb.list_id] == {"webhook": entry["webhook"], "created": False, "removed": 0}
        hooks = rt.connector("mailchimp").list_webhooks(sb.list_id)
        assert [h["url"] for h in hooks] == [f"{base}/webhooks/mailchimp/{MC_SECRET}"]
        assert {e for e, on in hooks[0]["events"].items() if on} == {"subscribe", "unsubscribe", "profile",
                                                                      "cleaned", "upemail"}  # fmt: skip
        rotated = Runtime(Settings(env={**rt.settings.env, "MAILCHIMP_WEBHOOK_SECRET": "new-secret-42"}),
                          config_dir=rt.config_dir, conn=redis_conn)  # fmt: skip
        rotated.use_connector("mailchimp", rt.connector("mailchimp"))
        # The running app still knows only the old secret: Mailchimp's GET fails, the old webhook stays.
        failed = setup(rotated, base)["lists"][sb.list_id]
        assert "error" in failed and "new-secret-42" not in str(failed)
        assert [h["id"] for h in rt.connector("mailchimp").list_webhooks(sb.list_id)] == [entry["webhook"]]
    port = int(base.rsplit(":", 1)[1])
    renewed = make_app(redis_url, rt.config_dir, redis_conn, MAILCHIMP_WEBHOOK_SECRET="new-secret-42")
    with served(renewed, port):  # the app restarted with the new secret
        again = setup(rotated, base)["lists"][sb.list_id]
        assert again["created"] is True and again["removed"] == 1
        hooks = rt.connector("mailchimp").list_webhooks(sb.list_id)
        assert [h["url"] for h in hooks] == [f"{base}/webhooks/mailchimp/new-secret-42"]


def _member_changes(sb: MailchimpSandbox) -> None:
    """Act as contacts do outside the API: sign up, edit a profile, unsubscribe, bounce, change address."""
    sb.admin(f"lists/{sb.list_id}/signup", {"email_address": "ann@example.com", "merge_fields": {"FNAME": "Ann"}})
    sb.admin(f"lists/{sb.list_id}/signup", {"email_address": "bob@example.com"})
    sb.admin(f"lists/{sb.list_id}/members/{md5('ann@example.com')}/profile", {"merge_fields": {"FNAME": "Anne"}})
    sb.admin(f"lists/{sb.list_id}/members/{md5('bob@example.com')}/unsubscribe", {"reason": "manual"})
    sb.admin(f"lists/{sb.list_id}/members/{md5('bob@example.com')}/clean", {"reason": "hard"})
    sb.admin(f"lists/{sb.list_id}/members/{md5('ann@example.com')}/profile", {"email_address": "anne@example.com"})


@pytest.mark.parametrize("faults", [{}, {"webhook_duplicate_rate": 1.0, "webhook_reorder_rate": 0.5, "seed": 9}])
def test_member_changes_arrive_as_one_event_each(wired: Any, redis_conn: redis.Redis, faults: dict[str, Any]) -> None:
    sb, hub_app, rt = wired
    with served(hub_app) as base:
        setup(rt, base)
        if faults:
            sb.set_faults(**faults)
        _member_changes(sb)
        sb.flush_webhooks()
        wait_for(lambda: len(events(redis_conn)) >= 6, what="six member events")
        sb.flush_webhooks()
        stats = sb.stats()["webhooks"]
    ann, bob, anne = md5("ann@example.com"), md5("bob@example.com"), md5("anne@example.com")
    got = Counter((e["id"], e["kind"], tuple(e["fields"])) for e in events(redis_conn))
    assert got == Counter({
        (ann, "unknown", ("status",)): 1,  # signed up
        (bob, "unknown", ("status",)): 1,
        (ann, "updated", ()): 1,  # profile
        (bob, "updated", ("status",)): 2,  # unsubscribed, then cleaned
        (anne, "updated", ("email_address",)): 1,  # upemail
    })  # fmt: skip
    assert {e["coll"] for e in events(redis_conn)} == {sb.list_id}
    if faults:
        assert stats["duplicated"] >= 1
