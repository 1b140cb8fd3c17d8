"""RecordState: what a job logs in memory for its drain is exactly what its outbox holds."""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
import redis

from hub.engine.state import FieldObs, RecordState

OUTBOX = "hub:outbox:test"


def call(key: str, system: str, fields: list[FieldObs], *, ms: int, outbox: str = OUTBOX) -> dict[str, Any]:
    values = {f.name: f.value.isoformat() if isinstance(f.value, date) else f.value for f in fields}
    return {
        "entity": "person",
        "key": key,
        "system": system,
        "coll_id": "contacts" if system != "hub" else "",
        "record_id": f"id-{key}" if system != "hub" else "",
        "source_ms": ms,
        "fields": fields,
        "outbox": outbox,
        "item": {"entity": "person", "system": system, "key": key, "values": values, "hint": ["email"]},
    }


def test_logged_entries_equal_the_outbox(redis_conn: redis.Redis) -> None:
    state = RecordState(redis_conn)
    logged: list[dict[str, Any]] = []
    a, b, c = "email:a@x.org", "email:b@x.org", "email:c@x.org"
    email = FieldObs("email", "a@x.org", "own")
    score = FieldObs("score", 3, "shared", True)
    first = [
        call(a, "hubspot", [email, score], ms=10),
        call(b, "hubspot", [FieldObs("email", "b@x.org", "own")], ms=10),
        call(c, "hubspot", [FieldObs("email", "c@x.org", "own")], ms=10, outbox=""),  # no outbox
    ]
    state.apply_many(first, logged=logged)
    later = [
        call(a, "hubspot", [email, score], ms=20),  # unchanged
        call(b, "airtable", [FieldObs("email", "b2@x.org", "deny:hubspot")], ms=20),  # refused: a conflict
        call(a, "hub", [FieldObs("score", 4, "own", True), FieldObs("since", date(2026, 1, 2), "own")], ms=30),
        call(a, "airtable", [FieldObs("score", 5, "shared", True)], ms=25),  # older than the hub's: refused
    ]
    applied = state.apply_many(later, logged=logged)
    assert [bool(a.changed) for a in applied] == [False, False, True, False]
    assert [len(a.conflicts) for a in applied] == [0, 1, 0, 1]
    in_redis = [orjson.loads(x) for x in redis_conn.lrange(OUTBOX, 0, -1)]
    # a and b created, b's refused edit, a's hub write, a's refused older edit; not the unchanged a
    assert len(in_redis) == 5
    assert logged == in_redis
    assert state.outbox(OUTBOX) == logged


def test_changes_carry_the_previous_value_of_tracked_fields(redis_conn: redis.Redis) -> None:
    """Shared and owned tracked fields, next to untracked ones: each change reports the value it replaced."""
    state = RecordState(redis_conn)
    key = "email:t@x.org"

    def fields(segment: str, score: int, note: str) -> list[FieldObs]:
        return [
            FieldObs("note", note, "shared"),
            FieldObs("segment", segment, "shared", True),
            FieldObs("email", "t@x.org", "own"),
            FieldObs("score", score, "own", True),
        ]

    first = state.apply_many([call(key, "hubspot", fields("new", 1, "a"), ms=10)])[0]
    assert first.created
    assert sorted(first.changed) == [("email", None, False), ("note", None, False), ("score", None, False),
                                     ("segment", None, False)]  # fmt: skip
    second = state.apply_many([call(key, "hubspot", fields("vip", 2, "b"), ms=20)])[0]
    assert sorted(second.changed) == [("note", None, True), ("score", 1, True), ("segment", "new", True)]
    # An older shared edit from another system is refused; the hub's own write replaces the owned value.
    older = state.apply_many([call(key, "airtable", [FieldObs("segment", "lost", "shared", True)], ms=15)])[0]
    assert older.conflicts == [("segment", "older")] and not older.changed
    hub = state.apply_many([call(key, "hub", [FieldObs("score", 3, "own", True)], ms=30)])[0]
    assert hub.changed == [("score", 2, True)]
    # The system that reported score 2 reporting it again is no change (it has not seen the hub's 3 yet).
    again = state.apply_many([call(key, "hubspot", fields("vip", 2, "b"), ms=40)])[0]
    assert not again.changed and not again.conflicts


def test_a_hub_value_and_a_refused_report_of_the_same_field_in_one_call(redis_conn: redis.Redis) -> None:
    """A computed field the reporting system also maps: its copy there is refused (the hub owns it),
    the value the hub computed from the same read is applied, in the one call."""
    state = RecordState(redis_conn)
    key = "email:h@x.org"
    first = state.apply_many([call(key, "hubspot", [FieldObs("tier", "gold", "hub", True)], ms=10)])[0]
    assert first.changed == [("tier", None, False)]
    both = [FieldObs("tier", "basic", "deny:hub", True), FieldObs("tier", "basic", "hub", True)]
    applied = state.apply_many([call(key, "hubspot", both, ms=20)])[0]
    assert applied.conflicts == [("tier", "deny:hub")] and applied.changed == [("tier", "gold", True)]
    # What the system reported is remembered as its copy: the same report again is nothing new.
    again = state.apply_many([call(key, "hubspot", both, ms=30)])[0]
    assert not again.changed and not again.conflicts


def test_links_are_kept_with_what_was_written(redis_conn: redis.Redis) -> None:
    state = RecordState(redis_conn)
    key = "email:l@x.org"
    state.apply_many([call(key, "hubspot", [FieldObs("email", "l@x.org", "own")], ms=10)])
    state.written_many("person", [(key, "mailchimp", {"email": "fp1"})], links=[(key, "mailchimp", "mc:list", "m1")])
    assert state.ids("person", key) == {"hubspot": f"id-{key}", "mailchimp": "m1"}
    assert state.key_for("mailchimp", "mc:list", "m1") == key
    assert redis_conn.hget(f"hub:r:person:{key}", "s:mailchimp:email") == b"fp1"
    assert redis_conn.ttl(f"hub:r:person:{key}") > 0 and redis_conn.ttl("hub:x:mailchimp:mc:list:m1") > 0


def test_fingerprints_are_the_digest_of_the_canonical_json() -> None:
    """What Redis already holds stays comparable: every kind of value digests as ``"`` + its text
    (dates as ISO text) or as its compact JSON with sorted keys, whatever short way is taken."""
    import enum
    import hashlib
    from datetime import UTC, datetime, timedelta, timezone

    from hub.engine.state import fingerprint
    from hub.fastjson import dumps
    from hub.mapping.values import to_json

    class Level(enum.IntEnum):
        PRO = 3

    class Colour(enum.StrEnum):
        RED = "red"

    def reference(value: Any) -> str:
        plain = to_json(value)
        data = ('"' + plain).encode() if isinstance(plain, str) else dumps(plain, sort_keys=True)
        return hashlib.sha1(data).hexdigest()[:16]

    values: list[Any] = [
        "", "é", "a@b.c", None, True, False, 0, -7, 3, 2**63 + 5, -(2**70), 1.0, 5000.0, 0.1, -2.5, 1e16,
        1.5e-7, 2.0**60, 2.0**53, 2.0**53 - 1, -0.0, float("inf"), float("nan"), date(2026, 3, 1),
        datetime(2026, 3, 1, 9, 30, tzinfo=UTC),
        datetime(2026, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=2))), ["b", 1, None],
        {"z": 1, "a": [True, 2.0]}, Level.PRO, Colour.RED,
    ]  # fmt: skip
    for value in values:
        assert fingerprint(value) == reference(value), value
    assert len({fingerprint(v) for v in (None, True, False, 0, 1, "1", "true", 1.5)}) == 8


def test_a_write_carrying_a_done_marker_happens_once(redis_conn: redis.Redis) -> None:
    state = RecordState(redis_conn)
    key, done = "email:d@x.org", "hub:act:test-action"
    first = state.apply(**call(key, "hub", [FieldObs("score", 4, "own", True)], ms=10), done=done)
    assert first.changed == [("score", None, False)] and not first.already
    assert redis_conn.get(done) == b"done:{}" and 34 * 86400 < redis_conn.ttl(done) <= 35 * 86400
    before = redis_conn.hgetall(f"hub:r:person:{key}"), redis_conn.llen(OUTBOX)
    # The same action again (its job retried), even with another value: nothing written, nothing pushed.
    again = state.apply(**call(key, "hub", [FieldObs("score", 5, "own", True)], ms=20), done=done)
    assert again.already and not again.changed
    assert (redis_conn.hgetall(f"hub:r:person:{key}"), redis_conn.llen(OUTBOX)) == before
    # Writes without the marker go on as usual.
    other = state.apply(**call(key, "hub", [FieldObs("score", 5, "own", True)], ms=20))
    assert other.changed == [("score", 4, True)] and not other.already
