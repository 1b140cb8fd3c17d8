"""The Mailchimp stand-in, driven by the real mailchimp-marketing SDK over HTTP.

Vendor facts these tests pin down (sources: the SDK 3.0.80 as installed — api_client.py and
api/lists_api.py; Mailchimp's published API definition as generated into
mailchimp/mailchimp-marketing-python-sdk; Mailchimp's error glossary and webhook guide):
- members are addressed by the MD5 of the lowercased email; PUT takes ``status_if_new`` for new
  members; tags given on create only; DELETE archives; ``actions/delete-permanent`` forgets, and a
  forgotten address is refused with the title "Forgotten Email Not Subscribed";
- errors are ``application/problem+json`` with type/title/status/detail/instance (the SDK only
  parses bodies whose content type contains ``application/json``, so it hands back the raw text);
  merge value errors are "Invalid Resource" / "Your merge fields were invalid." with
  ``errors: [{field, message}]``; 401 titles "API Key Missing"/"API Key Invalid";
- at most 10 simultaneous connections per key, else 429 "Too Many Requests";
- batch subscribe takes ≤ 500 members and answers new_members, updated_members, errors
  [{email_address, error, error_code: ERROR_CONTACT_EXISTS|ERROR_GENERIC, field, field_message}],
  total_created, total_updated, error_count; tags/events POSTs answer 204 with an empty body
  (the SDK returns the raw ``requests.Response``); event names are 2-30 characters;
- collections default to count=10 (max 1000) with offset paging and total_items;
- list webhooks: events subscribe/unsubscribe/profile/cleaned/upemail/campaign, sources
  user/admin/api; the URL is validated with a GET; deliveries are form-encoded with ``type``,
  ``fired_at`` ("YYYY-MM-DD HH:MM:SS") and ``data[...]`` keys such as ``data[merges][FNAME]``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from mailchimp_marketing.api_client import ApiClientError

from hub.sandbox.mailchimp import DEFAULT_API_KEY, MailchimpStandIn
from hub.sandbox.mailchimp_model import stamp
from tests.support.mailchimp import (
    MailchimpSandbox,
    hook_receiver,
    mailchimp_standin,  # noqa: F401
    running_mailchimp,
)
from tests.support.procs import wait_for


@pytest.fixture
def sb(mailchimp_standin: MailchimpSandbox) -> MailchimpSandbox:  # noqa: F811
    return mailchimp_standin


def md5(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def problem(exc: pytest.ExceptionInfo[ApiClientError]) -> dict[str, Any]:
    return dict(json.loads(exc.value.text))


def put(sb: MailchimpSandbox, email: str, **body: Any) -> dict[str, Any]:
    body.setdefault("status_if_new", "subscribed")
    return dict(sb.sdk().lists.set_list_member(sb.list_id, md5(email), {"email_address": email, **body}))


# -- auth and error shapes -------------------------------------------------------------------------
def test_auth_is_basic_with_the_api_key(sb: MailchimpSandbox) -> None:
    missing = requests.get(f"{sb.url}/3.0/lists", timeout=5)
    assert missing.status_code == 401
    assert missing.headers["Content-Type"].startswith("application/problem+json")
    assert missing.json()["title"] == "API Key Missing"
    with pytest.raises(ApiClientError) as exc:
        sb.sdk(api_key="0" * 32 + "-us1").lists.get_all_lists()
    assert exc.value.status_code == 401
    assert problem(exc)["title"] == "API Key Invalid"
    ok = requests.get(f"{sb.url}/3.0/lists", auth=("anystring", sb.api_key), timeout=5)
    assert ok.status_code == 200 and ok.json()["lists"][0]["id"] == "hubsandbx1"


def test_api_keys_must_look_like_mailchimp_keys() -> None:
    with pytest.raises(ValueError, match="32 hex"):
        MailchimpStandIn(api_keys=["not-a-key"])
    assert re.fullmatch(r"[0-9a-f]{32}-us1", DEFAULT_API_KEY)


def test_problem_details_for_unknown_things(sb: MailchimpSandbox) -> None:
    with pytest.raises(ApiClientError) as exc:
        sb.sdk().lists.get_list("nosuchlist")
    body = problem(exc)
    assert exc.value.status_code == 404
    assert set(body) == {"type", "title", "status", "detail", "instance"}
    assert (body["title"], body["status"]) == ("Resource Not Found", 404)
    resp = requests.put(f"{sb.url}/3.0/lists", auth=("x", sb.api_key), timeout=5)
    assert resp.status_code == 405 and resp.json()["title"] == "Method Not Allowed"
    bad_json = requests.put(
        f"{sb.url}/3.0/lists/{sb.list_id}/members/{md5('a@b.co')}",
        data=b"{nope",
        auth=("x", sb.api_key),
        timeout=5,
    )
    assert bad_json.status_code == 400 and bad_json.json()["title"] == "JSON Parse Error"


def test_stamps_are_whole_utc_seconds_whatever_second_came_before() -> None:
    """A batch's members share one formatted second: the next second, or an earlier one, is never
    given the cached text."""
    seconds = [1795311792.0, 1795311792.4, 1795311792.999, 1795311793.0, 1795311791.5, -1.5, 0.0, 1e9 + 0.999]
    for t in seconds + seconds[::-1]:
        assert stamp(t) == time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t)), t
    assert stamp(1795311792.9) == "2026-11-22T01:43:12+00:00"
    assert stamp(-0.5) == "1969-12-31T23:59:59+00:00"


# -- members -------------------------------------------------------------------------------------
def test_member_lifecycle_through_the_sdk(sb: MailchimpSandbox) -> None:
    lists = sb.sdk().lists
    member = put(sb, "Ann.Lee@Example.com", merge_fields={"FNAME": "Ann"}, tags=["lead"])
    assert member["id"] == md5("ann.lee@example.com")
    assert member["email_address"] == "Ann.Lee@Example.com"
    assert member["status"] == "subscribed" and member["list_id"] == sb.list_id
    assert member["merge_fields"]["FNAME"] == "Ann" and member["merge_fields"]["LNAME"] == ""
    assert [t["name"] for t in member["tags"]] == ["lead"] and member["tags_count"] == 1
    assert re.fullmatch(r"[0-9a-f]{10}", member["unique_email_id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", member["last_changed"])
    assert member["timestamp_opt"] == member["last_changed"]

    again = put(sb, "ann.lee@example.com", status="unsubscribed", tags=["ignored"])
    assert again["status"] == "unsubscribed" and [t["name"] for t in again["tags"]] == ["lead"]
    assert again["unique_email_id"] == member["unique_email_id"]

    patched = lists.update_list_member(sb.list_id, member["id"], {"merge_fields": {"LNAME": "Lee"}, "vip": True})
    assert patched["merge_fields"] == {**member["merge_fields"], "LNAME": "Lee"} and patched["vip"] is True
    assert patched["full_name"] == "Ann Lee"
    # The routes also accept the email address in place of the hash.
    assert lists.get_list_member(sb.list_id, "ann.lee@example.com")["id"] == member["id"]

    gone = lists.delete_list_member(sb.list_id, member["id"])
    assert gone.status_code == 204
    assert lists.get_list_member(sb.list_id, member["id"])["status"] == "archived"
    revived = put(sb, "ann.lee@example.com")
    assert revived["status"] == "subscribed"

    lists.delete_list_member_permanent(sb.list_id, member["id"])
    with pytest.raises(ApiClientError) as exc:
        lists.get_list_member(sb.list_id, member["id"])
    assert exc.value.status_code == 404
    with pytest.raises(ApiClientError) as exc:
        put(sb, "ann.lee@example.com")
    assert problem(exc)["title"] == "Forgotten Email Not Subscribed"
    assert "permanently deleted" in problem(exc)["detail"]


def test_put_hash_must_match_the_email(sb: MailchimpSandbox) -> None:
    lists = sb.sdk().lists
    with pytest.raises(ApiClientError) as exc:
        lists.set_list_member(
            sb.list_id,
            md5("other@example.com"),
            {"email_address": "me@example.com", "status_if_new": "subscribed"},
        )
    body = problem(exc)
    assert (exc.value.status_code, body["title"]) == (400, "Invalid Resource")
    assert body["errors"][0]["field"] == "email_address"
    put(sb, "me@example.com")
    with pytest.raises(ApiClientError) as exc:  # the body's address already belongs to a member
        lists.set_list_member(
            sb.list_id,
            md5("other@example.com"),
            {"email_address": "me@example.com", "status_if_new": "subscribed"},
        )
    assert problem(exc)["title"] == "Member Exists"
    with pytest.raises(ApiClientError) as exc:  # new members need status_if_new
        lists.set_list_member(sb.list_id, md5("new@example.com"), {"email_address": "new@example.com"})
    assert problem(exc)["errors"][0]["field"] == "status_if_new"
    with pytest.raises(ApiClientError) as exc:
        lists.add_list_member(sb.list_id, {"email_address": "me@example.com", "status": "subscribed"})
    assert problem(exc)["title"] == "Member Exists"
    with pytest.raises(ApiClientError) as exc:
        put(sb, "not-an-email")
    assert "looks fake or invalid" in problem(exc)["detail"]


def test_merge_values_are_validated_per_tag(sb: MailchimpSandbox) -> None:
    lists = sb.sdk().lists
    lists.add_list_merge_field(sb.list_id, {"tag": "SCORE", "name": "Score", "type": "number"})
    lists.add_list_merge_field(
        sb.list_id,
        {
            "tag": "PLAN",
            "name": "Plan",
            "type": "dropdown",
            "required": True,
            "options": {"choices": ["free", "pro"]},
        },
    )
    with pytest.raises(ApiClientError) as exc:
        put(sb, "a@example.com", merge_fields={"NOPE": "x", "SCORE": "high", "PLAN": "gold"})
    body = problem(exc)
    assert (body["title"], body["detail"]) == ("Invalid Resource", "Your merge fields were invalid.")
    assert {e["field"] for e in body["errors"]} == {"NOPE", "SCORE", "PLAN"}
    with pytest.raises(ApiClientError) as exc:  # PLAN is required
        put(sb, "a@example.com", merge_fields={"SCORE": 3})
    assert body_fields(exc) == {"PLAN": "Please enter a value"}
    created = sb.sdk().lists.set_list_member(
        sb.list_id,
        md5("a@example.com"),
        {"email_address": "a@example.com", "status_if_new": "pending", "merge_fields": {"SCORE": 3}},
        skip_merge_validation=True,
    )
    assert created["status"] == "pending" and created["merge_fields"]["SCORE"] == 3
    dated = put(
        sb,
        "b@example.com",
        merge_fields={
            "PLAN": "pro",
            "BIRTHDAY": "02/29",
            "ADDRESS": {"addr1": "1 rue", "city": "Arles", "state": "13", "zip": "13200", "country": "FR"},
        },
    )
    assert dated["merge_fields"]["BIRTHDAY"] == "02/29" and dated["merge_fields"]["ADDRESS"]["city"] == "Arles"


def body_fields(exc: pytest.ExceptionInfo[ApiClientError]) -> dict[str, str]:
    return {e["field"]: e["message"] for e in problem(exc)["errors"]}


def test_merge_fields_collection_and_limits() -> None:
    with running_mailchimp(max_merge_fields=12) as sb:
        lists = sb.sdk().lists
        first = lists.get_list_merge_fields(sb.list_id)
        assert [f["tag"] for f in first["merge_fields"]] == ["FNAME", "LNAME", "ADDRESS", "PHONE", "BIRTHDAY"]
        for i in range(7):
            field = lists.add_list_merge_field(sb.list_id, {"name": f"Field {i}", "type": "text"})
            assert field["tag"] == f"MMERGE{field['merge_id']}" and field["type"] == "text"
        page = lists.get_list_merge_fields(sb.list_id)
        assert (len(page["merge_fields"]), page["total_items"]) == (10, 12)  # default count is 10
        assert len(lists.get_list_merge_fields(sb.list_id, count=1000)["merge_fields"]) == 12
        with pytest.raises(ApiClientError) as exc:
            lists.add_list_merge_field(sb.list_id, {"name": "One more", "type": "text"})
        assert "maximum of 12" in problem(exc)["detail"]
        lists.delete_list_merge_field(sb.list_id, field["merge_id"])
        with pytest.raises(ApiClientError) as exc:
            lists.add_list_merge_field(sb.list_id, {"tag": "FNAME", "name": "Again", "type": "text"})
        assert "already exists" in problem(exc)["detail"]
        with pytest.raises(ApiClientError) as exc:
            lists.add_list_merge_field(sb.list_id, {"tag": "ELEVENCHARS", "name": "Long", "type": "text"})
        assert problem(exc)["errors"][0]["field"] == "tag"
        with pytest.raises(ApiClientError) as exc:
            lists.add_list_merge_field(sb.list_id, {"name": "Kind", "type": "checkbox"})
        assert problem(exc)["errors"][0]["field"] == "type"


def test_tags_and_events(sb: MailchimpSandbox) -> None:
    lists = sb.sdk().lists
    h = put(sb, "t@example.com")["id"]
    resp = lists.update_list_member_tags(
        sb.list_id, h, {"tags": [{"name": "vip", "status": "active"}, {"name": "trial", "status": "active"}]}
    )
    assert resp.status_code == 204 and resp.text == ""
    lists.update_list_member_tags(sb.list_id, h, {"tags": [{"name": "trial", "status": "inactive"}]})
    tags = lists.get_list_member_tags(sb.list_id, h)
    assert [t["name"] for t in tags["tags"]] == ["vip"] and tags["total_items"] == 1
    assert lists.get_list_member(sb.list_id, h)["tags"] == [{"id": tags["tags"][0]["id"], "name": "vip"}]
    with pytest.raises(ApiClientError) as exc:
        lists.update_list_member_tags(sb.list_id, h, {"tags": [{"name": "x", "status": "on"}]})
    assert exc.value.status_code == 400

    ok = lists.create_list_member_event(sb.list_id, h, {"name": "video_uploaded", "properties": {"n": "1"}})
    assert ok.status_code == 204
    for bad in ("a", "x" * 31, "has space", "accent-é"):
        with pytest.raises(ApiClientError) as exc:
            lists.create_list_member_event(sb.list_id, h, {"name": bad})
        assert problem(exc)["errors"][0]["field"] == "name"
    events = lists.get_list_member_events(sb.list_id, h)
    assert [(e["name"], e["properties"]) for e in events["events"]] == [("video_uploaded", {"n": "1"})]
    with pytest.raises(ApiClientError) as exc:
        lists.create_list_member_event(sb.list_id, md5("nobody@example.com"), {"name": "seen"})
    assert exc.value.status_code == 404


def test_batch_subscribe(sb: MailchimpSandbox) -> None:
    lists = sb.sdk().lists
    with pytest.raises(ApiClientError) as exc:
        lists.batch_list_members(
            sb.list_id,
            {"members": [{"email_address": f"m{i}@example.com", "status": "subscribed"} for i in range(501)]},
        )
    assert exc.value.status_code == 400 and problem(exc)["errors"][0]["field"] == "members"
    put(sb, "old@example.com", merge_fields={"FNAME": "Old"})
    members = [
        {"email_address": "new1@example.com", "status": "subscribed", "merge_fields": {"FNAME": "N"}},
        {"email_address": "old@example.com", "status": "subscribed", "merge_fields": {"FNAME": "Older"}},
        {"email_address": "bad@example.com", "status": "subscribed", "merge_fields": {"NOPE": 1}},
        {"email_address": "nostatus@example.com"},
    ]
    first = lists.batch_list_members(sb.list_id, {"members": members})
    assert [m["email_address"] for m in first["new_members"]] == ["new1@example.com"]
    assert (first["total_created"], first["total_updated"], first["error_count"]) == (1, 0, 3)
    errors = {e["email_address"]: e for e in first["errors"]}
    assert errors["old@example.com"]["error_code"] == "ERROR_CONTACT_EXISTS"
    assert errors["bad@example.com"]["error_code"] == "ERROR_GENERIC"
    assert errors["bad@example.com"]["field"] == "NOPE"
    assert errors["nostatus@example.com"]["field"] == "status"
    second = lists.batch_list_members(sb.list_id, {"members": members[:2], "update_existing": True})
    assert [m["merge_fields"]["FNAME"] for m in second["updated_members"]] == ["N", "Older"]
    assert second["error_count"] == 0 and second["total_updated"] == 2


def test_member_paging_filters_and_projection() -> None:
    now = [1_750_000_000.0]
    with running_mailchimp(clock=lambda: now[0]) as sb:
        lists = sb.sdk().lists
        lists.batch_list_members(
            sb.list_id,
            {"members": [{"email_address": f"p{i:02d}@example.com", "status": "subscribed"} for i in range(25)]},
        )
        now[0] += 60
        put(sb, "p03@example.com", status="unsubscribed")
        put(sb, "late@example.com")
        first = lists.get_list_members_info(sb.list_id)
        assert (len(first["members"]), first["total_items"]) == (10, 26)
        seen = [
            m["email_address"]
            for off in (0, 10, 20)
            for m in lists.get_list_members_info(sb.list_id, count=10, offset=off)["members"]
        ]
        assert len(seen) == len(set(seen)) == 26
        since = "2025-06-15T15:07:00+00:00"  # 1_750_000_020: after the batch, before the changes
        changed = lists.get_list_members_info(sb.list_id, since_last_changed=since, count=100)
        assert {m["email_address"] for m in changed["members"]} == {"p03@example.com", "late@example.com"}
        unsub = lists.get_list_members_info(sb.list_id, status="unsubscribed")
        assert [m["email_address"] for m in unsub["members"]] == ["p03@example.com"]
        slim = lists.get_list_members_info(sb.list_id, count=2, fields=["members.email_address", "total_items"])
        assert slim == {
            "members": [{"email_address": "p00@example.com"}, {"email_address": "p01@example.com"}],
            "total_items": 26,
        }
        lean = lists.get_list_member(sb.list_id, md5("p00@example.com"), exclude_fields=["_links", "merge_fields"])
        assert "_links" not in lean and "merge_fields" not in lean and lean["status"] == "subscribed"
        # The SDK refuses count > 1000 itself; the API answers 400 too.
        with pytest.raises(ValueError, match="1000"):
            lists.get_list_members_info(sb.list_id, count=1001)
        too_many = requests.get(
            f"{sb.url}/3.0/lists/{sb.list_id}/members?count=1001", auth=("x", sb.api_key), timeout=5
        )
        assert too_many.status_code == 400


def test_compliance_states_block_resubscribe(sb: MailchimpSandbox) -> None:
    lists = sb.sdk().lists
    left = put(sb, "left@example.com")
    sb.admin(f"lists/{sb.list_id}/members/{left['id']}/unsubscribe", {"source": "user"})
    with pytest.raises(ApiClientError) as exc:
        put(sb, "left@example.com", status="subscribed")
    assert problem(exc)["title"] == "Member In Compliance State"
    assert put(sb, "left@example.com", status="pending")["status"] == "pending"  # a confirmation is allowed
    bounced = put(sb, "bounced@example.com")
    sb.admin(f"lists/{sb.list_id}/members/{bounced['id']}/clean", {"reason": "hard"})
    with pytest.raises(ApiClientError) as exc:
        lists.update_list_member(sb.list_id, bounced["id"], {"status": "subscribed"})
    assert problem(exc)["title"] == "Member In Compliance State"
    # An admin unsubscribe through the API can be undone through the API.
    put(sb, "admin@example.com", status_if_new="unsubscribed")
    assert put(sb, "admin@example.com", status="subscribed")["status"] == "subscribed"


# -- connections, faults, persistence -----------------------------------------------------------
def _concurrent_gets(sb: MailchimpSandbox, n: int) -> list[int]:
    statuses: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        resp = requests.get(f"{sb.url}/3.0/lists/{sb.list_id}", auth=("x", sb.api_key), timeout=30)
        with lock:
            statuses.append(resp.status_code)

    sb.standin.hold()
    threads = [threading.Thread(target=one) for _ in range(n)]
    try:
        for t in threads:
            t.start()
        admitted = min(n, sb.standin.connection_limit)
        wait_for(
            lambda: sb.standin.inflight(sb.api_key) == admitted and len(statuses) == n - admitted,
            what=f"{admitted} held connections",
        )
    finally:
        sb.standin.release()
        for t in threads:
            t.join(timeout=30)
    return sorted(statuses)


def test_ten_connections_pass_the_eleventh_gets_429(sb: MailchimpSandbox) -> None:
    assert _concurrent_gets(sb, 10) == [200] * 10
    assert _concurrent_gets(sb, 11) == [200] * 10 + [429]
    assert sb.standin.peak(sb.api_key) == 10 and sb.standin.inflight(sb.api_key) == 0
    resp = requests.get(f"{sb.url}/_sandbox/connections", timeout=5).json()
    assert resp["limit"] == 10 and list(resp["peak"].values()) == [10]


def test_injected_latency_holds_a_connection(sb: MailchimpSandbox) -> None:
    sb.set_faults(latency_ms=1500)
    statuses: list[int] = []
    slow = threading.Thread(
        target=lambda: statuses.append(
            requests.get(f"{sb.url}/3.0/ping", auth=("x", sb.api_key), timeout=30).status_code
        )
    )
    slow.start()
    wait_for(lambda: sb.standin.inflight(sb.api_key) == 1, what="the slow request counted as a connection")
    slow.join(timeout=30)
    assert statuses == [200] and sb.standin.inflight(sb.api_key) == 0


def test_injected_faults_are_problem_details(sb: MailchimpSandbox) -> None:
    sb.set_faults(error_rate=1.0, error_statuses=[503])
    with pytest.raises(ApiClientError) as exc:
        sb.sdk().lists.get_list(sb.list_id)
    assert exc.value.status_code == 503 and problem(exc)["title"] == "Service Unavailable"
    sb.set_faults(error_rate=0.0)
    assert sb.sdk().lists.get_list(sb.list_id)["id"] == sb.list_id
    assert sb.stats()["statuses"]["503"] == 1


def test_state_survives_a_restart(tmp_path: Path) -> None:
    with running_mailchimp(data_dir=str(tmp_path)) as sb:
        put(sb, "kept@example.com", merge_fields={"FNAME": "Kept"})
        sb.sdk().lists.add_list_merge_field(sb.list_id, {"tag": "SCORE", "name": "Score", "type": "number"})
    with running_mailchimp(data_dir=str(tmp_path)) as sb:
        member = sb.sdk().lists.get_list_member(sb.list_id, md5("kept@example.com"))
        assert member["merge_fields"]["FNAME"] == "Kept" and "SCORE" in member["merge_fields"]


# -- webhooks ------------------------------------------------------------------------------------
def test_webhook_registration_checks_the_url(sb: MailchimpSandbox) -> None:
    lists = sb.sdk().lists
    with hook_receiver(get_status=404) as refusing:
        with pytest.raises(ApiClientError) as exc:
            lists.create_list_webhook(sb.list_id, {"url": refusing.url})
        assert problem(exc)["errors"][0]["field"] == "url" and "404" in problem(exc)["errors"][0]["message"]
        assert [h.method for h in refusing.hits] == ["GET"]
    with hook_receiver() as receiver:
        hook = lists.create_list_webhook(sb.list_id, {"url": receiver.url, "events": {"campaign": True}})
        assert receiver.hits[0].headers["User-Agent"] == "MailChimp.com WebHook Validator"
        assert hook["events"] == {
            "subscribe": True,
            "unsubscribe": True,
            "profile": True,
            "cleaned": True,
            "upemail": True,
            "campaign": True,
        }
        assert hook["sources"] == {"user": True, "admin": True, "api": False}
        assert [h["id"] for h in lists.get_list_webhooks(sb.list_id)["webhooks"]] == [hook["id"]]
        with pytest.raises(ApiClientError) as exc:
            lists.create_list_webhook(sb.list_id, {"url": receiver.url})
        assert exc.value.status_code == 400
        lists.delete_list_webhook(sb.list_id, hook["id"])
        assert lists.get_list_webhooks(sb.list_id)["total_items"] == 0
    with pytest.raises(ApiClientError) as exc:
        lists.create_list_webhook(sb.list_id, {"url": "ftp://example.com/x"})
    assert exc.value.status_code == 400


def test_member_changes_post_form_encoded_webhooks(sb: MailchimpSandbox) -> None:
    lists = sb.sdk().lists
    with hook_receiver(post_statuses=[500]) as receiver:  # the first delivery fails and is retried
        lists.create_list_webhook(sb.list_id, {"url": receiver.url, "sources": {"api": True}})
        member = put(sb, "Hook@Example.com", merge_fields={"FNAME": "Hugo", "LNAME": "Ok"})
        lists.update_list_member(sb.list_id, member["id"], {"merge_fields": {"FNAME": "Hugues"}})
        lists.update_list_member(sb.list_id, member["id"], {"email_address": "moved@example.com"})
        lists.update_list_member(sb.list_id, md5("moved@example.com"), {"status": "unsubscribed"})
        other = put(sb, "bounce@example.com")
        sb.admin(f"lists/{sb.list_id}/members/{other['id']}/clean", {"reason": "hard", "campaign_id": "c1"})
        sb.flush_webhooks()
        # One sender thread, in order; the first delivery is there twice (500, then retried).
        kinds = [f["type"] for f in receiver.forms()]
        assert kinds == [
            "subscribe",
            "subscribe",
            "profile",
            "upemail",
            "unsubscribe",
            "subscribe",
            "cleaned",
        ]
        assert receiver.forms()[0] == receiver.forms()[1]

        subscribe = receiver.forms("subscribe")[0]
        assert subscribe["data[id]"] == member["id"] and subscribe["data[list_id]"] == sb.list_id
        assert subscribe["data[email]"] == "Hook@Example.com" and subscribe["data[email_type]"] == "html"
        assert subscribe["data[merges][FNAME]"] == "Hugo" and subscribe["data[merges][EMAIL]"] == "Hook@Example.com"
        assert "data[ip_opt]" in subscribe
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", subscribe["fired_at"])
        assert receiver.forms("profile")[0]["data[merges][FNAME]"] == "Hugues"
        upemail = receiver.forms("upemail")[0]
        assert (upemail["data[old_email]"], upemail["data[new_email]"]) == (
            "Hook@Example.com",
            "moved@example.com",
        )
        assert upemail["data[new_id]"] == md5("moved@example.com")
        unsub = receiver.forms("unsubscribe")[0]
        assert (unsub["data[action]"], unsub["data[email]"]) == ("unsub", "moved@example.com")
        cleaned = receiver.forms("cleaned")[0]
        assert (cleaned["data[reason]"], cleaned["data[campaign_id]"]) == ("hard", "c1")
        post = receiver.posts()[-1]
        assert post.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert post.path.endswith("?secret=s3cret")


def test_api_changes_are_silent_unless_the_api_source_is_on(sb: MailchimpSandbox) -> None:
    lists = sb.sdk().lists
    with hook_receiver() as receiver:
        lists.create_list_webhook(sb.list_id, {"url": receiver.url, "events": {"campaign": True}})
        member = put(sb, "quiet@example.com")
        lists.update_list_member(sb.list_id, member["id"], {"merge_fields": {"FNAME": "Q"}})
        sb.admin(f"lists/{sb.list_id}/members/{member['id']}/profile", {"merge_fields": {"LNAME": "User"}})
        sb.admin(f"lists/{sb.list_id}/members/{member['id']}/unsubscribe", {"reason": "manual"})
        sb.admin(
            f"lists/{sb.list_id}/signup",
            {"email_address": "fresh@example.com", "merge_fields": {"FNAME": "Fresh"}},
        )
        sb.admin(f"lists/{sb.list_id}/campaign", {"subject": "Hello", "id": "camp1"})
        sb.flush_webhooks()
        assert [f["type"] for f in receiver.forms()] == ["profile", "unsubscribe", "subscribe", "campaign"]
        assert receiver.forms("profile")[0]["data[merges][LNAME]"] == "User"
        campaign = receiver.forms("campaign")[0]
        assert (campaign["data[id]"], campaign["data[subject]"], campaign["data[status]"]) == (
            "camp1",
            "Hello",
            "sent",
        )


def test_webhook_duplicate_faults(sb: MailchimpSandbox) -> None:
    sb.set_faults(webhook_duplicate_rate=1.0)
    with hook_receiver() as receiver:
        sb.sdk().lists.create_list_webhook(sb.list_id, {"url": receiver.url})
        sb.admin(f"lists/{sb.list_id}/signup", {"email_address": "twice@example.com"})
        sb.flush_webhooks()
        forms = receiver.forms("subscribe")
        assert len(forms) == 2 and forms[0] == forms[1]
