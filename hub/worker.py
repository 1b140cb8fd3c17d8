"""The hub's RQ worker.

A non-forking worker (rq's ``SimpleWorker``): forking per job costs ~12 ms here (rq's forking
worker does ~80 trivial jobs/s on this class of machine), while a long-lived process keeps its
loaded config, Redis connection and SDK clients warm. Isolation comes from running several worker
processes (the Procfile's ``worker`` line scales out), and each job's errors are contained by
:func:`hub.jobs.hub_job`. The rq scheduler runs inside (delayed jobs, retries, waits).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.worker import SimpleWorker

from hub import jobs
from hub.runtime import Runtime

BEAT_EVERY = 1.0  # seconds between the worker's own heartbeats (its key lives 8 minutes)


class HubWorker(SimpleWorker):
    """SimpleWorker with the hub's serializer and queues, which also recovers the jobs of workers
    that died (SIGKILL, OOM, a lost dyno) as soon as it can tell they are dead.

    rq refreshes the worker's heartbeat three times per job (two round trips each) and checks for
    ``rq suspend`` before each job: with jobs back to back that is half of rq's Redis traffic per
    job. Here both happen at most once a second; the heartbeats rq makes as part of starting a job
    (with the job's own time-out) are untouched."""

    _beat_at = 0.0
    _suspension_checked_at = 0.0

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if timeout is None and pipeline is None:
            mono = time.monotonic()
            if mono - self._beat_at < BEAT_EVERY:
                return
            self._beat_at = mono
        super().heartbeat(timeout, pipeline)

    def check_for_suspension(self, burst: bool) -> None:
        mono = time.monotonic()
        if mono - self._suspension_checked_at < BEAT_EVERY:
            return
        self._suspension_checked_at = mono
        super().check_for_suspension(burst)

    def clean_registries(self) -> None:
        try:
            reap_orphans(self.connection, [q.name for q in self.queues])
        except redis.RedisError as exc:  # Redis restarting: rq's own loop waits for it; so do we
            logging.getLogger("hub.worker").warning("could not look for orphaned jobs: %s", exc)
        super().clean_registries()


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
    return bool(worker.work(burst=burst, with_scheduler=with_scheduler, logging_level=logging_level))
