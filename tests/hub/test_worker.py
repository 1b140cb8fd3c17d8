"""The hub's worker class: rq's bookkeeping, throttled to once a second or in fewer round trips, still done."""

from __future__ import annotations

import pytest
import redis
from rq import Repeat
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.results import Result
from rq.suspension import resume, suspend
from rq.worker import SimpleWorker

from hub import jobs
from hub.worker import BEAT_EVERY, HubWorker, build
from tests.support import jobfuncs
from tests.support.monitor import commands


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


def _enqueue(conn: redis.Redis, name: str) -> Job:
    job = jobs.enqueue(conn, jobfuncs.record, f"hub:test:{name}", name, queue_name=jobs.QUEUE_HIGH)
    assert job is not None
    return job


def _work(conn: redis.Redis, worker_class: type[SimpleWorker], name: str, job: Job) -> Job:
    queues = [jobs.queue(conn, q) for q in jobs.QUEUES]
    worker = worker_class(queues, connection=conn, serializer=jobs.HubSerializer, name=name)
    assert worker.work(burst=True)
    return Job.fetch(job.id, connection=conn, serializer=jobs.HubSerializer)


def _traces(conn: redis.Redis, job: Job, worker: str) -> dict[str, object]:
    """What rq's API shows of a finished job and of the worker that ran it."""
    result = job.latest_result()
    assert result is not None
    stats = conn.hgetall(f"rq:worker:{worker}")
    return {
        "status": job.get_status(),
        "args": list(job.args),
        "fields": sorted(conn.hkeys(job.key)),
        "ttl": 3500 < conn.ttl(job.key) <= 3600,
        "times": job.started_at is not None and job.ended_at is not None and job.ended_at >= job.started_at,
        "result": (result.type, result.return_value, result.execution_id is not None),
        "finished": job.id in job.finished_job_registry,
        "started": job.id in StartedJobRegistry(job.origin, connection=conn),
        "executions": sorted(conn.scan_iter(f"rq:execution*:{job.id}*")),
        "worker": (stats.get(b"successful_job_count"), float(stats.get(b"total_working_time", 0)) > 0,
                   b"current_job" in stats),
    }


def test_a_job_finishes_as_rq_itself_would_leave_it_in_fewer_round_trips(redis_conn: redis.Redis) -> None:
    theirs = _work(redis_conn, SimpleWorker, "rq-own", _enqueue(redis_conn, "rq-own"))
    job = _enqueue(redis_conn, "hub-lean")
    with commands(redis_conn) as sent:
        ours = _work(redis_conn, HubWorker, "hub-lean", job)
    expected = _traces(redis_conn, theirs, "rq-own")
    assert expected["status"] == JobStatus.FINISHED and expected["finished"] and not expected["started"]
    assert _traces(redis_conn, ours, "hub-lean") == {**expected, "args": ["hub:test:hub-lean", "hub-lean"],
                                                     "result": (Result.Type.SUCCESSFUL, "hub-lean", True)}  # fmt: skip
    # No watch for dependents (hub jobs have none), and the job is not written whole again.
    assert not [c for c in sent if c.startswith("WATCH")]
    assert not [c for c in sent if c.startswith("HSET " + ours.key) and " data " in c]


def test_a_job_rq_repeats_takes_rqs_own_path(redis_conn: redis.Redis) -> None:
    jobs.queue(redis_conn, jobs.QUEUE_HIGH).enqueue(jobfuncs.bump, "hub:test:bumps", repeat=Repeat(times=2))
    assert build(redis_conn, name="repeats").work(burst=True)
    assert redis_conn.get("hub:test:bumps") == b"3"
