"""Jobs on a real Redis, executed by a real `hub worker` process: retries and the failed registry."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime

import pytest
import redis
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from hub import jobs
from hub.worker import GC_THRESHOLD
from tests.support import jobfuncs
from tests.support.procs import python_env, wait_for


@pytest.fixture
def worker(redis_conn: redis.Redis, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    cfg = tmp_path_factory.mktemp("cfg")
    (cfg / "rules.yaml").write_text("rules: []\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "--config", str(cfg), "worker"],
        env=python_env(REDIS_URL=redis_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    yield
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def _status(conn: redis.Redis, job: Job) -> JobStatus | None:
    job.refresh()
    return job.get_status()


@pytest.mark.usefixtures("worker")
def test_a_job_is_executed_by_a_real_worker(redis_conn: redis.Redis) -> None:
    job = jobs.enqueue(redis_conn, jobfuncs.record, "hub:test:k", "v")
    assert job is not None
    wait_for(lambda: redis_conn.get("hub:test:k") == b"v", what="the job's effect")
    wait_for(lambda: _status(redis_conn, job) == JobStatus.FINISHED, what="job finished")


@pytest.mark.usefixtures("worker")
def test_a_worker_freezes_what_it_loaded_and_collects_garbage_less_often(redis_conn: redis.Redis) -> None:
    jobs.enqueue(redis_conn, jobfuncs.gc_state, "hub:test:gc")
    wait_for(lambda: redis_conn.get("hub:test:gc") is not None, what="the job's effect")
    threshold, frozen = map(int, (redis_conn.get("hub:test:gc") or b"").split())
    assert threshold == GC_THRESHOLD > 700  # Python's default is 700
    assert frozen > 10_000  # its config, SDKs and modules: not walked by every collection


@pytest.mark.usefixtures("worker")
def test_a_transient_failure_is_retried_after_retry_after(redis_conn: redis.Redis) -> None:
    job = jobs.enqueue(redis_conn, jobfuncs.flaky, "hub:test:flaky", 2, 1.0, retry_intervals=[0, 0, 0])
    assert job is not None
    wait_for(lambda: _status(redis_conn, job) == JobStatus.FINISHED, timeout=30, what="flaky job to succeed")
    assert int(redis_conn.get("hub:test:flaky") or 0) == 3
    times = [float(t) for t in redis_conn.lrange("hub:test:flaky:attempts", 0, -1)]
    # Retry-After (1 s) was honoured although the configured intervals were 0.
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(times)), times


@pytest.mark.usefixtures("worker")
def test_a_permanent_failure_lands_in_the_failed_registry_with_its_reason(redis_conn: redis.Redis) -> None:
    job = jobs.enqueue(redis_conn, jobfuncs.permanent, "hub:test:perm", retry_intervals=[0, 0, 0])
    assert job is not None
    wait_for(lambda: _status(redis_conn, job) == JobStatus.FAILED, what="job to fail")
    registry = FailedJobRegistry(jobs.QUEUE_DEFAULT, connection=redis_conn, serializer=jobs.HubSerializer)
    assert job.id in registry.get_job_ids()
    job.refresh()
    assert job.meta["reason"] == "PermanentError: airtable/Clients/Emial: field does not exist"
    assert "airtable/Clients/Emial: field does not exist" in (job.latest_result().exc_string or "")
    assert int(redis_conn.get("hub:test:perm") or 0) == 1  # not retried


@pytest.mark.usefixtures("worker")
def test_a_config_error_is_never_retried(redis_conn: redis.Redis) -> None:
    job = jobs.enqueue(redis_conn, jobfuncs.config_error, "hub:test:cfg", retry_intervals=[0, 0, 0])
    assert job is not None
    wait_for(lambda: _status(redis_conn, job) == JobStatus.FAILED, what="job to fail")
    job.refresh()
    assert job.meta["reason"].startswith("ConfigError: environment variable AIRTABLE_API_KEY is not set")
    assert int(redis_conn.get("hub:test:cfg") or 0) == 1


def test_job_arguments_must_be_json(redis_conn: redis.Redis) -> None:
    with pytest.raises(TypeError, match="must be JSON values"):
        jobs.enqueue(redis_conn, jobfuncs.record, "k", datetime(2026, 1, 1))


def test_unique_job_ids_enqueue_once(redis_conn: redis.Redis) -> None:
    first = jobs.enqueue(redis_conn, jobfuncs.record, "k", "v", job_id="once", unique_for=60)
    second = jobs.enqueue(redis_conn, jobfuncs.record, "k", "v", job_id="once", unique_for=60)
    assert first is not None and second is None
    assert jobs.queue(redis_conn).count == 1


def test_serializer_reads_rq_cron_pickles_of_plain_values_only() -> None:
    import pickle

    plain = pickle.dumps(("hub.jobs.tick", None, (), {"rule": "x"}), protocol=4)
    assert jobs.HubSerializer.loads(plain) == ("hub.jobs.tick", None, (), {"rule": "x"})
    hostile = pickle.dumps(("f", None, (datetime(2026, 1, 1),), {}), protocol=4)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load datetime\.datetime"):
        jobs.HubSerializer.loads(hostile)


@pytest.mark.usefixtures("worker")
def test_a_templated_job_reads_and_runs_like_one_rq_enqueued(redis_conn: redis.Redis) -> None:
    func = f"{jobfuncs.record.__module__}.record"
    by_rq = jobs.enqueue(redis_conn, func, "hub:test:rq", "v1", queue_name=jobs.QUEUE_HIGH)
    tpl = jobs.JobTemplate(redis_conn, func, jobs.QUEUE_HIGH)
    job_id, fields = tpl.variable(("hub:test:tpl", "v2"), {})
    redis_conn.hset(tpl.key_for(job_id), mapping={**tpl.constant, **fields})
    redis_conn.rpush(tpl.queue_key, job_id)
    assert by_rq is not None
    wait_for(lambda: redis_conn.get("hub:test:tpl") == b"v2", what="the templated job's effect")
    wait_for(lambda: _status(redis_conn, by_rq) == JobStatus.FINISHED, what="rq's job finished")
    ours = Job.fetch(job_id, connection=redis_conn, serializer=jobs.HubSerializer)
    theirs = Job.fetch(by_rq.id, connection=redis_conn, serializer=jobs.HubSerializer)
    assert list(ours.args) == ["hub:test:tpl", "v2"] and ours.kwargs == {}
    same = ("func_name", "origin", "timeout", "result_ttl", "failure_ttl", "retry_intervals", "description")
    assert {a: getattr(ours, a) for a in same} == {a: getattr(theirs, a) for a in same} | {
        "description": f"{func}(…, 'v2')"  # never values that may be personal data
    }
    assert ours.get_status() == JobStatus.FINISHED and ours.enqueued_at is not None
    assert abs((ours.created_at - theirs.created_at).total_seconds()) < 30
