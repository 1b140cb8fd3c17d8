"""The Mailchimp connector over the wire: mailchimp-marketing → the local stand-in, with a real
Redis behind the connection governor. Nothing in the SDK is patched."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import redis
from mailchimp_marketing.api_client import ApiClientError

from connectors.base import Collection, Connector, FieldSpec, Write
from connectors.mailchimp import (
    MailchimpBatchError,
    MailchimpConnector,
    classify,
    connect,
    subscriber_hash,
)
from hub.errors import ConfigError, MissingSetting, PermanentError, RateLimited, TransientError
from hub.settings import Settings
from tests.support.mailchimp import (
    MailchimpSandbox,
    connector_for,
    fast_policy,
    hook_receiver,
    mailchimp,  # noqa: F401
    mailchimp_standin,  # noqa: F401
    running_mailchimp,
)
from tests.support.procs import wait_for

MEMBERS = "/3.0/lists/<list_id>/members"


@pytest.fixture
def sb(mailchimp_standin: MailchimpSandbox) -> MailchimpSandbox:  # noqa: F811
    return mailchimp_standin


@pytest.fixture
def mc(mailchimp: MailchimpConnector) -> MailchimpConnector:  # noqa: F811
    return mailchimp


@pytest.fixture
def audience(sb: MailchimpSandbox) -> Collection:
    return Collection(sb.list_id)


def person(i: int, **merges: object) -> Write:
    return Write({"email_address": f"person{i:04d}@example.com", "merge_fields": {"FNAME": f"P{i}", **merges}})


def test_it_is_a_connector(mc: MailchimpConnector) -> None:
    assert isinstance(mc, Connector) and mc.system == "mailchimp"


def test_crud_and_identity(mc: MailchimpConnector, audience: Collection, sb: MailchimpSandbox) -> None:
    written = mc.upsert_many(
        audience,
        [
            Write({"email_address": " Ann@Example.com ", "merge_fields.FNAME": "Ann", "status": "subscribed"}),
            Write({"email_address": "bob@example.com", "merge_fields": {"FNAME": "Bob"}}, match="email_address"),
        ],
    )
    ann, bob = written
    assert ann.id == subscriber_hash("ann@example.com") == sb.sdk().lists.get_list_member(sb.list_id, ann.id)["id"]
    assert ann.fields["merge_fields"]["FNAME"] == "Ann" and "_links" not in ann.fields
    assert bob.fields["status"] == "subscribed"  # status_if_new for a new member
    assert ann.updated_at is not None and ann.updated_at.tzinfo is not None

    found = mc.find(audience, "email_address", "ANN@example.com")
    assert [r.id for r in found] == [ann.id]
    assert [r.id for r in mc.get_many(audience, [bob.id, subscriber_hash("nobody@example.com"), ann.id])] == [
        bob.id,
        ann.id,
    ]
    assert mc.find(audience, "merge_fields.FNAME", "Bob")[0].id == bob.id
    assert mc.find(audience, "unique_email_id", bob.fields["unique_email_id"])[0].id == bob.id

    (updated,) = mc.upsert_many(audience, [Write({"email_address": "bob@example.com", "merge_fields": {"LNAME": "B"}})])
    assert updated.id == bob.id and updated.fields["merge_fields"] == {**bob.fields["merge_fields"], "LNAME": "B"}

    mc.delete(audience, [bob.id, subscriber_hash("never@example.com")])
    assert mc.get(audience, bob.id) is None and mc.find(audience, "email_address", "bob@example.com") == []
    assert sb.sdk().lists.get_list_member(sb.list_id, bob.id)["status"] == "archived"
    assert [r.id for r in mc.iterate(audience)] == [ann.id]
    assert [r.id for r in mc.iterate(audience, where={"status": "archived"})] == [bob.id]


def test_write_by_id_changes_the_email(mc: MailchimpConnector, audience: Collection) -> None:
    (old,) = mc.upsert_many(audience, [Write({"email_address": "old@example.com"})])
    (moved,) = mc.upsert_many(audience, [Write({"email_address": "new@example.com"}, id=old.id)])
    assert moved.id == subscriber_hash("new@example.com") and moved.fields["email_address"] == "new@example.com"
    assert mc.get(audience, old.id) is None
    (renamed,) = mc.upsert_many(audience, [Write({"merge_fields.FNAME": "Neo"}, id=moved.id)])
    assert renamed.fields["merge_fields"]["FNAME"] == "Neo"


def test_paging_over_250_members(mc: MailchimpConnector, audience: Collection, sb: MailchimpSandbox) -> None:
    writes = [person(i) for i in range(260)]
    mc.upsert_many(audience, writes)
    before = sb.requests_to("GET", MEMBERS)
    records = list(mc.iterate(audience, page_size=100))
    assert [r.fields["email_address"] for r in records] == [w.fields["email_address"] for w in writes]
    assert sb.requests_to("GET", MEMBERS) - before == 3
    assert len(list(mc.iterate(audience, where={"merge_fields.FNAME": "P7"}))) == 1
    with pytest.raises(ConfigError, match="page_size"):
        list(mc.iterate(audience, page_size=1001))
    with pytest.raises(ConfigError, match="match"):
        mc.upsert_many(audience, [person(1), Write({"email_address": "x@example.com"}, match="phone")])


def test_batches_are_split_at_500(mc: MailchimpConnector, audience: Collection, sb: MailchimpSandbox) -> None:
    writes = [person(i) for i in range(1200)]
    records = mc.upsert_many(audience, writes)
    assert sb.requests_to("POST", "/3.0/lists/<list_id>") == 3
    assert [r.fields["email_address"] for r in records] == [w.fields["email_address"] for w in writes]
    assert sb.sdk().lists.get_list_members_info(sb.list_id, count=1)["total_items"] == 1200


def test_changed_since_uses_since_last_changed(redis_conn: redis.Redis) -> None:
    now = [1_760_000_000.0]
    with running_mailchimp(clock=lambda: now[0]) as sandbox:
        mc = connector_for(sandbox, redis_conn)
        audience = Collection(sandbox.list_id)
        mc.upsert_many(audience, [person(1), person(2), person(3)])
        now[0] += 30
        mc.upsert_many(audience, [person(2, LNAME="changed"), person(4)])
        cutoff = datetime.fromtimestamp(now[0], UTC)
        changed = [r.fields["email_address"] for r in mc.iterate(audience, changed_since=cutoff)]
        assert changed == ["person0002@example.com", "person0004@example.com"]
        halfway = datetime.fromtimestamp(now[0] - 15.5, UTC).replace(tzinfo=None)  # naive means UTC
        assert len(list(mc.iterate(audience, changed_since=halfway))) == 2
        assert len(list(mc.iterate(audience, changed_since=datetime.fromtimestamp(now[0] - 30, UTC)))) == 4


def test_refused_members_are_reported_not_dropped(
    mc: MailchimpConnector, audience: Collection, sb: MailchimpSandbox
) -> None:
    mc.upsert_many(audience, [Write({"email_address": "gone@example.com"})])
    assert mc.forget(audience, "gone@example.com") is True
    assert mc.forget(audience, "gone@example.com") is False
    writes = [
        person(1),
        Write({"email_address": "typo@example.com", "merge_fields": {"NOPE": "x"}}),
        Write({"email_address": "gone@example.com"}),
        person(2),
        Write({"merge_fields.FNAME": "no email"}),
    ]
    with pytest.raises(MailchimpBatchError) as exc:
        mc.upsert_many(audience, writes)
    err = exc.value
    assert isinstance(err, PermanentError) and err.system == "mailchimp" and err.obj == sb.list_id
    assert [f.index for f in err.failures] == [1, 2, 4]
    assert err.failures[0].field == "NOPE" and err.failures[0].error_code == "ERROR_GENERIC"
    assert "permanently deleted" in err.failures[1].error
    assert err.failures[2].field == "email_address"
    assert [r is not None for r in err.records] == [True, False, False, True, False]
    assert mc.get(audience, subscriber_hash("person0002@example.com")) is not None
    assert str(err).startswith(f"mailchimp/{sb.list_id}/NOPE: 3 of 5 members refused")


def test_permanent_errors_name_the_merge_field(
    mc: MailchimpConnector, audience: Collection, sb: MailchimpSandbox
) -> None:
    mc.ensure_schema(audience, [FieldSpec("SCORE", "number")])
    (member,) = mc.upsert_many(audience, [person(1)])
    with pytest.raises(MailchimpBatchError) as exc:  # by id: a PATCH, refused by the API itself
        mc.upsert_many(audience, [Write({"merge_fields": {"SCORE": "lots"}}, id=member.id)])
    assert exc.value.failures[0].field == "SCORE" and "Please enter a number" in exc.value.failures[0].error
    with pytest.raises(PermanentError) as missing:
        mc.tag(Collection("nosuchlist"), "a@example.com", add=["x"])
    assert (missing.value.status, missing.value.obj) == (404, "nosuchlist")
    assert "Resource Not Found" in str(missing.value)
    assert sb.requests_to("POST", MEMBERS + "/<key>/tags") == 1  # a 4xx is not retried


def test_classify_maps_statuses() -> None:
    body = (
        '{"title": "Invalid Resource", "status": 400, "detail": "Your merge fields were invalid.", '
        '"errors": [{"field": "PHONE", "message": "Please enter a valid phone number"}]}'
    )
    err = classify(ApiClientError(body, 400), "list1")
    assert isinstance(err, PermanentError) and (err.obj, err.field, err.status) == ("list1", "PHONE", 400)
    assert isinstance(classify(ApiClientError('{"title": "Too Many Requests"}', 429)), RateLimited)
    assert isinstance(classify(ApiClientError("<html>bad gateway</html>", 502)), TransientError)
    assert isinstance(classify(ApiClientError(ConnectionError("refused"))), TransientError)


def test_transient_errors_are_retried(sb: MailchimpSandbox, redis_conn: redis.Redis, audience: Collection) -> None:
    mc = connector_for(sb, redis_conn, policy=fast_policy(attempts=12))
    mc.upsert_many(audience, [Write({"email_address": "x@example.com"})])
    sb.set_faults(error_rate=0.5, error_statuses=[500, 503, 429], seed=7)
    for i in range(11):
        mc.tag(audience, "x@example.com", add=[f"t{i}"])
    statuses = sb.stats()["statuses"]
    assert sum(statuses.get(s, 0) for s in ("500", "503", "429")) > 0 and statuses["204"] == 11
    sb.set_faults(error_rate=0.0)
    assert len(mc.find(audience, "email_address", "x@example.com")[0].fields["tags"]) == 11
    sb.set_faults(error_rate=0.0, timeout_rate=0.5, timeout_seconds=1.0, seed=3)
    slow = connector_for(sb, redis_conn, policy=fast_policy(attempts=12), timeout=0.3)
    for _ in range(4):
        slow.event(audience, "x@example.com", "page_viewed", {"n": 1})
    sb.set_faults(timeout_rate=0.0)
    # Some answers came too late (the stand-in logs them once its injected sleep ends).
    wait_for(lambda: sb.stats()["statuses"].get("504", 0) > 0, what="a late answer to have been retried")
    events = sb.sdk().lists.get_list_member_events(sb.list_id, subscriber_hash("x@example.com"))
    assert events["total_items"] >= 4  # a timed-out request may still have landed: at least once


def test_eleven_writers_never_see_a_429(
    sb: MailchimpSandbox, redis_conn: redis.Redis, redis_url: str, audience: Collection
) -> None:
    mc = connector_for(sb, redis_conn)
    mc.upsert_many(audience, [person(i) for i in range(11)])
    writers = [connector_for(sb, redis.Redis.from_url(redis_url)) for _ in range(11)]  # like 11 workers
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for n in range(3):
                writers[i].tag(audience, f"person{i:04d}@example.com", add=[f"round{n}"])
        except BaseException as exc:
            errors.append(exc)

    sb.standin.hold()
    threads = [threading.Thread(target=write, args=(i,)) for i in range(11)]
    try:
        for t in threads:
            t.start()
        wait_for(lambda: sb.standin.inflight(sb.api_key) == 10, what="ten connections in flight")
        assert redis_conn.zcard(mc.inflight.key) == 10  # the eleventh writer waits on the governor
    finally:
        sb.standin.release()
        for t in threads:
            t.join(timeout=60)
    assert errors == []
    assert "429" not in sb.stats()["statuses"] and sb.standin.peak(sb.api_key) == 10
    tags = sb.sdk().lists.get_list_member_tags(sb.list_id, subscriber_hash("person0010@example.com"))
    assert {t["name"] for t in tags["tags"]} == {"round0", "round1", "round2"}
    for w in writers:
        w.inflight.conn.close()


def test_ensure_schema_creates_missing_merge_fields(
    mc: MailchimpConnector, audience: Collection, sb: MailchimpSandbox
) -> None:
    lists = sb.sdk().lists
    for i in range(6):  # past the default page of 10 merge fields
        lists.add_list_merge_field(sb.list_id, {"tag": f"EXTRA{i}", "name": f"Extra {i}", "type": "text"})
    specs = [
        FieldSpec("email_address", "email"),
        FieldSpec("FNAME"),
        FieldSpec("EXTRA5"),
        FieldSpec("merge_fields.PLAN", "enum", label="Plan", options=("free", "pro")),
        FieldSpec("score", "number"),
        FieldSpec("SEEN_ON", "date"),
    ]
    assert mc.ensure_schema(audience, specs) == ["PLAN", "SCORE", "SEEN_ON"]
    assert mc.ensure_schema(audience, specs) == []
    fields = {f["tag"]: f for f in lists.get_list_merge_fields(sb.list_id, count=100)["merge_fields"]}
    assert fields["PLAN"]["type"] == "dropdown" and fields["PLAN"]["options"]["choices"] == ["free", "pro"]
    assert (fields["PLAN"]["name"], fields["SCORE"]["type"], fields["SEEN_ON"]["type"]) == ("Plan", "number", "date")
    before = sb.stats()["requests"]
    with pytest.raises(ConfigError, match="1-10 letters"):
        mc.ensure_schema(audience, [FieldSpec("NEWONE"), FieldSpec("WAY_TOO_LONG_TAG")])
    with pytest.raises(ConfigError, match="needs options"):
        mc.ensure_schema(audience, [FieldSpec("KIND", "enum")])
    with pytest.raises(ConfigError, match="no Mailchimp merge field type"):
        mc.ensure_schema(audience, [FieldSpec("BLOB", "binary")])
    assert sb.stats()["requests"] == before  # refused before any request


def test_tags_and_events(mc: MailchimpConnector, audience: Collection, sb: MailchimpSandbox) -> None:
    mc.upsert_many(audience, [Write({"email_address": "tagged@example.com"})])
    mc.tag(audience, "tagged@example.com", add=["client", "vip"])
    mc.tag(audience, "Tagged@Example.com", remove=["vip"])
    (record,) = mc.find(audience, "email_address", "tagged@example.com")
    assert [t["name"] for t in record.fields["tags"]] == ["client"]
    mc.event(audience, "tagged@example.com", "video_delivered", {"ticket": 42, "late": None})
    events = sb.sdk().lists.get_list_member_events(sb.list_id, record.id)["events"]
    assert [(e["name"], e["properties"]) for e in events] == [("video_delivered", {"ticket": "42", "late": ""})]
    with pytest.raises(ConfigError, match="2-30"):
        mc.event(audience, "tagged@example.com", "video delivered!")


def test_list_webhooks_through_the_connector(mc: MailchimpConnector, audience: Collection) -> None:
    with hook_receiver() as receiver:
        hook = mc.create_webhook(audience, receiver.url, events=["unsubscribe", "cleaned"], sources=["user"])
        assert hook["events"]["unsubscribe"] and not hook["events"]["subscribe"]
        assert hook["sources"] == {"user": True, "admin": False, "api": False}
        assert [h["id"] for h in mc.list_webhooks(audience)] == [hook["id"]]
        mc.delete_webhook(audience, hook["id"])
        assert mc.list_webhooks(audience) == []
    with pytest.raises(ConfigError, match="bounce"):
        mc.create_webhook(audience, "http://127.0.0.1:9/x", events=["bounce"])
    with pytest.raises(PermanentError) as exc:  # nothing listens there: Mailchimp's GET check fails
        mc.create_webhook(audience, "http://127.0.0.1:9/x")
    assert exc.value.field == "url"


def test_connect_reads_the_settings(sb: MailchimpSandbox, redis_conn: redis.Redis) -> None:
    with pytest.raises(MissingSetting, match="MAILCHIMP_API_KEY"):
        connect(Settings(env={}), redis_conn)
    with pytest.raises(ConfigError, match="data center"):
        connect(Settings(env={"MAILCHIMP_API_KEY": "abc"}), redis_conn)
    env = {**sb.env, "MAILCHIMP_HOST": sb.url + "/3.0/"}
    mc = connect(Settings(env=env), redis_conn, policy=fast_policy())
    assert mc.api.host == sb.url + "/3.0"
    assert mc.get(Collection(sb.list_id), subscriber_hash("nobody@example.com")) is None
    real = connect(Settings(env={"MAILCHIMP_API_KEY": "0" * 32 + "-us7"}), redis_conn)
    assert real.api.server == "us7"  # the SDK's https://server.api.mailchimp.com/3.0


def test_text_outside_ascii_goes_and_comes_back_as_written(mc: MailchimpConnector, audience: Collection) -> None:
    """Bodies go out as UTF-8 and answers are read from UTF-8 (orjson), not as escaped ASCII."""
    name = "Zoë Ñúñez — 東京"
    zoe = Write({"email_address": "zoe@example.com", "merge_fields": {"FNAME": name}})
    (written,) = mc.upsert_many(audience, [zoe])
    assert written.fields["merge_fields"]["FNAME"] == name
    got = mc.get(audience, written.id)
    assert got is not None and got.fields["merge_fields"]["FNAME"] == name
