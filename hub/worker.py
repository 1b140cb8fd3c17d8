"""The hub's RQ worker.

A non-forking worker (rq's ``SimpleWorker``): forking per job costs ~12 ms here (rq's forking
worker does ~80 trivial jobs/s on this class of machine), while a long-lived process keeps its
loaded config, Redis connection and SDK clients warm. Isolation comes from running several worker
processes (the Procfile's ``worker`` line scales out), and each job's errors are contained by
:func:`hub.jobs.hub_job`. The rq scheduler runs inside (delayed jobs, retries, waits).
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.results import Result
from rq.utils import now, utcformat
from rq.worker import SimpleWorker, WorkerStatus

from hub import jobs, scripts
from hub.runtime import Runtime

BEAT_EVERY = 1.0  # seconds between the worker's own heartbeats (its key lives 8 minutes)
GC_THRESHOLD = 10_000  # containers allocated (net) between two young-generation collections (default 700)


class HubWorker(SimpleWorker):
    """SimpleWorker with the hub's serializer and queues, which also recovers the jobs of workers
    that died (SIGKILL, OOM, a lost dyno) as soon as it can tell they are dead.

    rq refreshes the worker's heartbeat three times per job (two round trips each) and checks for
    ``rq suspend`` before each job: with jobs back to back that is half of rq's Redis traffic per
    job. Here both happen at most once a second; the heartbeats rq makes as part of starting a job
    (with the job's own time-out) are untouched.

    A job's own bookkeeping is rq's, in fewer round trips (five per job instead of eleven): its
    execution record is written with the rest of its start, and a success is one transaction that
    updates the job's status and end time rather than writing the whole job again (rq compresses
    its arguments anew for that, ~0.4 ms for a batch of 100 events). Hub jobs have no dependents,
    callbacks or repeats; a job that has any goes through rq's own path. Both transactions are
    queued by rq's own calls and sent by :func:`hub.scripts.transaction`: a quarter to half less of
    rq's CPU per job than redis-py's ``execute()``."""

    _beat_at = 0.0
    _suspension_checked_at = 0.0
    _state_written: str | None = None

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if timeout is None and pipeline is None:
            mono = time.monotonic()
            if mono - self._beat_at < BEAT_EVERY:
                return
            self._beat_at = mono
            self._state_written = None  # the worker's hash may be new (Redis restarted): write the state again
        super().heartbeat(timeout, pipeline)

    def set_state(self, state: str, pipeline: Any = None) -> None:
        """rq sets ``idle`` twice between two jobs; the second write changes nothing."""
        if pipeline is None and state == self._state_written:
            self._state = state
            return
        super().set_state(state, pipeline)
        self._state_written = state

    def check_for_suspension(self, burst: bool) -> None:
        mono = time.monotonic()
        if mono - self._suspension_checked_at < BEAT_EVERY:
            return
        self._suspension_checked_at = mono
        super().check_for_suspension(burst)

    # -- a job's bookkeeping ----------------------------------------------------------------------
    @staticmethod
    def _plain(job: Job) -> bool:
        """No callbacks and no repeats: what rq does around the job is its bookkeeping only."""
        return not (job._success_callback_name or job._failure_callback_name or job.repeats_left)

    def execute_job(self, job: Job, queue: Queue) -> None:
        """SimpleWorker's, with the execution record made in :meth:`prepare_job_execution`."""
        if not self._plain(job):
            super().execute_job(job, queue)
            return
        self.perform_job(job, queue)
        self.set_state(WorkerStatus.IDLE)

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """rq's preparation and its execution record (``prepare_execution``) in one transaction."""
        if not self._plain(job) or (self.execution is not None and self.execution.job_id == job.id):
            super().prepare_job_execution(job, remove_from_intermediate_queue)  # made by rq's own path
            return
        ttl = self.get_heartbeat_ttl(job)
        with self.connection.pipeline() as pipe:
            self.execution = Execution.create(job, ttl, pipeline=pipe, worker_name=self.name)
            self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            self.set_current_job_id(job.id, pipeline=pipe)
            self.set_current_job_working_time(0, pipeline=pipe)
            self.heartbeat(ttl, pipeline=pipe)
            job.prepare_for_execution(self.name, pipeline=pipe)
            if remove_from_intermediate_queue:
                pipe.lrem(Queue(job.origin, connection=self.connection).intermediate_queue_key, 1, job.id)
            scripts.transaction(pipe)
        self.procline(f"Processing {job.func_name} from {job.origin} since {time.time()}")

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        """rq refreshes the job's heartbeat here to cover its callback; a plain job that succeeded
        has none, and its success is written next. After a failure rq's heartbeat stays: it is the
        call that stops a worker that lost Redis (the next worker recovers the job at once)."""
        if not self._plain(job) or job.get_status(refresh=False) == JobStatus.FAILED:
            super().handle_execution_ended(job, queue, heartbeat_ttl)
            return
        job.ended_at = now()

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry) -> None:
        """rq's success bookkeeping in one transaction, without watching for dependents (hub jobs
        have none) and without writing the whole job again."""
        if not self._plain(job):
            super().handle_job_success(job, queue, started_job_registry)
            return
        assert job.started_at is not None and job.ended_at is not None
        result_ttl = job.get_result_ttl(self.default_result_ttl)
        with self.connection.pipeline() as pipe:
            self.increment_successful_job_count(pipeline=pipe)
            self.increment_total_working_time(job.ended_at - job.started_at, pipe)
            if result_ttl != 0:
                job.set_status(JobStatus.FINISHED, pipeline=pipe)
                pipe.hset(job.key, "ended_at", utcformat(job.ended_at))
                execution = self.execution
                Result.create(job, Result.Type.SUCCESSFUL, result_ttl, return_value=job._result,
                              worker_name=self.name, pipeline=pipe, execution_id=execution and execution.id,
                              execution_started_at=execution and execution.created_at,
                              execution_ended_at=job.ended_at)  # fmt: skip
                job.finished_job_registry.add(job, result_ttl, pipe)
            job.cleanup(result_ttl, pipeline=pipe, remove_from_queue=False)
            self.cleanup_execution(job, pipeline=pipe)
            self.set_state(WorkerStatus.IDLE, pipeline=pipe)  # what execute_job does next, in this round trip
            scripts.transaction(pipe)
        what = job.description if self.log_job_description else job.id
        took = job.ended_at - job.started_at
        self.log.info("Successfully completed %s job in %ss on worker %s", what, took, self.name)

    def clean_registries(self) -> None:
        try:
            reap_orphans(self.connection, [q.name for q in self.queues])
        except redis.RedisError as exc:  # Redis restarting: rq's own loop waits for it; so do we
            logging.getLogger("hub.worker").warning("could not look for orphaned jobs: %s", exc)
        super().clean_registries()


def settle_gc() -> None:
    """Tune the cyclic garbage collector for a long-lived worker, once it has loaded what it runs on.

    Its config, SDKs and connections are kept for good: frozen, the collector stops walking them
    again and again. And a batch of 100 events builds and drops tens of thousands of containers,
    nearly all freed by reference counting at once: with the default threshold (700) the collector
    ran ~100 times per 1,000 events, ~10 % of the worker's CPU; with 10,000, about once."""
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _worker_dead(conn: redis.Redis, name: str | None) -> bool:
    """Dead: unregistered (its heartbeat expired), or registered on this host with a PID that is gone."""
    if not name:
        return False
    raw = conn.hmget(f"rq:worker:{name}", "hostname", "pid")
    if raw[0] is None and raw[1] is None:
        return True
    host, pid = (raw[0] or b"").decode(), int(raw[1] or 0)
    return host == socket.gethostname() and pid > 0 and not _pid_alive(pid)


def reap_orphans(conn: redis.Redis, queue_names: Sequence[str] = jobs.QUEUES) -> int:
    """Hand the jobs of dead workers to rq's own abandoned-job handling now, rather than when their
    timeout runs out (10 minutes): retried if they have retries left, failed otherwise."""
    reaped = 0
    for name in queue_names:
        registry = StartedJobRegistry(name, connection=conn, serializer=jobs.HubSerializer)
        for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
            try:
                job = Job.fetch(job_id, connection=conn, serializer=jobs.HubSerializer)
            except NoSuchJobError:
                continue
            if _worker_dead(conn, job.worker_name):
                conn.zadd(registry.key, {f"{job_id}:{execution_id}": 1}, xx=True)  # expired now
                reaped += 1
        if reaped:
            registry.cleanup()
    if reaped:
        logging.getLogger("hub.worker").warning("recovered %d job(s) of workers that died", reaped)
    return reaped


def build(conn: redis.Redis, queue_names: Sequence[str] = jobs.QUEUES, name: str | None = None) -> HubWorker:
    queues = [Queue(q, connection=conn, serializer=jobs.HubSerializer) for q in queue_names]
    return HubWorker(queues, connection=conn, serializer=jobs.HubSerializer, name=name)


def run(
    *,
    burst: bool = False,
    name: str | None = None,
    with_scheduler: bool = True,
    queue_names: Sequence[str] = jobs.QUEUES,
    logging_level: str = "INFO",
) -> bool:
    """Work until stopped (or until the queues are empty with ``burst``)."""
    logging.basicConfig(level=logging_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runtime = Runtime.current()
    cfg = runtime.config  # load (and report) the config before taking jobs
    logging.getLogger("hub.worker").info(
        "config %s: %d mappings, %d rules (%d refused)",
        runtime.config_dir,
        len(cfg.mappings),
        len(cfg.rules),
        len(cfg.refused_rules),
    )
    runtime.preload()
    from hub.engine import intake, propagate, rules, waits  # noqa: F401 (imported before the first job)

    reap_orphans(runtime.redis, queue_names)
    released = waits.release(runtime.redis)  # waits that came due while no worker ran: fire them now (once)
    if released:
        logging.getLogger("hub.worker").info("released %d wait(s) that came due while workers were down", released)
    worker = build(runtime.redis, queue_names, name)
    settle_gc()
    return bool(worker.work(burst=burst, with_scheduler=with_scheduler, logging_level=logging_level))
