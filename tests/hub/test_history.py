"""Run history: capped lists, and a record's own list does not outlive the record's state."""

from __future__ import annotations

import redis

from hub.engine import history
from hub.engine.entities import key_hash


def _entry(rule: str, key: str, n: int) -> dict[str, object]:
    return {"at": "2026-06-01T12:00:00Z", "rule": rule, "record": key_hash(key), "decision": "skipped", "n": n}


def test_a_records_list_expires_and_every_list_stays_capped(redis_conn: redis.Redis) -> None:
    buffer = history.Buffer(redis_conn)
    for n in range(history.CAP_RECORD + 5):
        buffer(_entry("welcome", "email:a@x.org", n))
    buffer(_entry("welcome", "email:b@x.org", 0))
    buffer.flush()
    history.record(redis_conn, _entry("renewal", "email:c@x.org", 0))  # the unbuffered path
    for key in ("email:a@x.org", "email:b@x.org", "email:c@x.org"):
        ttl = redis_conn.ttl(f"{history.ALL}:rec:{key_hash(key)}")
        assert 0 < ttl <= history.RECORD_TTL, key
    # The lists shared by all records are capped, not expired: they stay while the hub runs.
    assert redis_conn.ttl(history.ALL) == -1 and redis_conn.ttl(f"{history.ALL}:rule:welcome") == -1
    assert redis_conn.llen(f"{history.ALL}:rec:{key_hash('email:a@x.org')}") == history.CAP_RECORD
    newest = history.read(redis_conn, record_key="email:a@x.org", limit=1)
    assert newest[0]["n"] == history.CAP_RECORD + 4
