"""The shared accept path on a real Redis: overlapping deliveries racing each other, and the job
hash it writes is one rq reads like its own."""

from __future__ import annotations

import random
import threading

import redis
from rq.job import Job, JobStatus

from hub import jobs
from webhooks.intake import accept_on, dedupe_key


def _event(n: int) -> dict[str, object]:
    return {"system": "hubspot", "coll": "contacts", "id": str(n), "kind": "updated"}


def test_racing_overlapping_deliveries_queue_every_event_exactly_once(redis_conn: redis.Redis) -> None:
    rng = random.Random(7)
    deliveries = [rng.sample(range(40), 12) for _ in range(24)]  # each event sent several times
    start = threading.Barrier(8)
    results: list[tuple[int, int, int]] = []
    lock = threading.Lock()

    def deliver(batches: list[list[int]]) -> None:
        conn = redis.Redis(connection_pool=redis_conn.connection_pool)
        start.wait(timeout=10)
        for batch in batches:
            out = accept_on(conn, "hubspot", [_event(n) for n in batch], [dedupe_key("hubspot", [n]) for n in batch])
            with lock:
                results.append((out.received, out.enqueued, out.duplicates))

    threads = [threading.Thread(target=deliver, args=(deliveries[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    sent = {n for batch in deliveries for n in batch}
    queued = [e["id"] for job in jobs.queue(redis_conn, jobs.QUEUE_HIGH).jobs for e in job.args[1]]
    assert sorted(queued) == sorted(str(n) for n in sent)  # every event once, none twice
    assert sum(r[1] for r in results) == len(sent)
    assert all(r[0] == r[1] + r[2] for r in results) and len(results) == len(deliveries)


def test_a_repeated_key_in_one_delivery_counts_once(redis_conn: redis.Redis) -> None:
    key = dedupe_key("hubspot", ["same"])
    out = accept_on(redis_conn, "hubspot", [_event(1), _event(2)], [key, key])
    assert (out.enqueued, out.duplicates) == (1, 1)
    (job,) = jobs.queue(redis_conn, jobs.QUEUE_HIGH).jobs
    assert [e["id"] for e in job.args[1]] == ["1"]


def test_the_queued_job_reads_as_rq_wrote_it(redis_conn: redis.Redis) -> None:
    out = accept_on(redis_conn, "hubspot", [_event(5)], [dedupe_key("hubspot", [5])], extra={"flag": True})
    assert out.job_id is not None
    job = Job.fetch(out.job_id, connection=redis_conn, serializer=jobs.HubSerializer)
    assert job.func_name == "hub.engine.intake.handle_events"
    assert list(job.args) == ["hubspot", [_event(5)]] and job.kwargs == {"flag": True}
    assert job.get_status() == JobStatus.QUEUED and job.origin == jobs.QUEUE_HIGH
    assert job.retries_left == len(jobs.RETRY_INTERVALS) and job.timeout == jobs.DEFAULT_TIMEOUT
    assert job.description == "hub.engine.intake.handle_events('hubspot', [1 item(s)])"  # no personal data
    assert redis_conn.sismember("rq:queues", jobs.queue(redis_conn, jobs.QUEUE_HIGH).key)
