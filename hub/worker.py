"""The hub's RQ worker.

A non-forking worker (rq's ``SimpleWorker``): forking per job costs ~12 ms here (rq's forking
worker does ~80 trivial jobs/s on this class of machine), while a long-lived process keeps its
loaded config, Redis connection and SDK clients warm. Isolation comes from running several worker
processes (the Procfile's ``worker`` line scales out), and each job's errors are contained by
:func:`hub.jobs.hub_job`. The rq scheduler runs inside (delayed jobs, retries, waits).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis
from rq import Queue
from rq.worker import SimpleWorker

from hub import jobs
from hub.runtime import Runtime


class HubWorker(SimpleWorker):
    """SimpleWorker with the hub's serializer and queues."""


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
    from hub.engine import waits

    released = waits.release(runtime.redis)  # waits that came due while no worker ran: fire them now (once)
    if released:
        logging.getLogger("hub.worker").info("released %d wait(s) that came due while workers were down", released)
    worker = build(runtime.redis, queue_names, name)
    return bool(worker.work(burst=burst, with_scheduler=with_scheduler, logging_level=logging_level))
