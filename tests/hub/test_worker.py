"""The hub's worker class: rq's bookkeeping, throttled to once a second, still done."""

from __future__ import annotations

import pytest
import redis
from rq.suspension import resume, suspend

from hub import jobs
from hub.worker import BEAT_EVERY, build
from tests.support import jobfuncs


def _beat(conn: redis.Redis, name: str) -> bytes | None:
    return conn.hget(f"rq:worker:{name}", "last_heartbeat")


def test_back_to_back_jobs_share_heartbeats_but_a_beat_a_second_later_is_sent(
    redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = build(redis_conn, name="beats")
    worker.register_birth()
    clock = [1000.0]
    monkeypatch.setattr("hub.worker.time.monotonic", lambda: clock[0])
    worker.heartbeat()
    first = _beat(redis_conn, "beats")
    assert first is not None
    worker.heartbeat()  # the same second: skipped
    assert _beat(redis_conn, "beats") == first
    redis_conn.expire("rq:worker:beats", 5)
    worker.heartbeat(timeout=900)  # rq's beat when a job starts (the job's time-out) always goes out
    assert redis_conn.ttl("rq:worker:beats") > 800
    clock[0] += BEAT_EVERY
    redis_conn.hdel("rq:worker:beats", "last_heartbeat")
    worker.heartbeat()
    assert _beat(redis_conn, "beats") is not None


def test_jobs_run_back_to_back_and_a_suspended_worker_takes_none(redis_conn: redis.Redis) -> None:
    for i in range(5):
        jobs.enqueue(redis_conn, jobfuncs.record, f"hub:test:w{i}", "v")
    assert build(redis_conn, name="w1").work(burst=True)
    assert all(redis_conn.get(f"hub:test:w{i}") == b"v" for i in range(5))

    suspend(redis_conn)
    jobs.enqueue(redis_conn, jobfuncs.record, "hub:test:after", "v")
    assert not build(redis_conn, name="w2").work(burst=True)  # rq suspend is honoured at once
    assert redis_conn.get("hub:test:after") is None
    resume(redis_conn)
    assert build(redis_conn, name="w3").work(burst=True)
    assert redis_conn.get("hub:test:after") == b"v"
