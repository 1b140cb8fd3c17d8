"""Real `hub worker` processes for end-to-end tests, and waiting until the hub has settled."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import redis
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from hub import jobs
from tests.support.hubenv import Hub
from tests.support.procs import python_env, wait_for

_ALL: list[Workers] = []


def stop_all() -> None:
    """Stop every worker process a test started, whatever happened to the test (no orphans left to
    pick up another test's jobs)."""
    while _ALL:
        _ALL.pop().stop()


class Workers:
    """`hub worker` processes on the test's config, clock pinned through HUB_NOW."""

    def __init__(self, hub: Hub, now: str) -> None:
        assert hub.rt is not None
        self.env = python_env(**{k: v for k, v in hub.env(hub.rt.config_dir).items() if k != "PYTHONPATH"},
                              HUB_NOW=now, HUBSPOT_RATE_LIMIT="100000", HUBSPOT_SEARCH_RATE_LIMIT="1000")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.restarts = 0
        self.log = open(hub.tmp / "workers.log", "ab")  # noqa: SIM115 - closed in stop()
        _ALL.append(self)

    def start(self, n: int = 1) -> None:
        new = [subprocess.Popen([sys.executable, "-m", "hub.cli", "worker"], env=self.env,
                                stdout=subprocess.DEVNULL, stderr=self.log) for _ in range(n)]
        self.procs.extend(new)
        # Started = registered with rq (it has released due waits and reaped orphans by then).
        wait_for(lambda: {p.pid for p in new} <= self.registered(), timeout=60, what="workers to register")

    def registered(self) -> set[int]:
        conn = redis.Redis.from_url(self.env["REDIS_URL"])
        try:
            return {int(conn.hget(k, "pid") or 0) for k in conn.smembers("rq:workers")}
        finally:
            conn.close()

    def kill(self, index: int = 0) -> None:
        self.procs[index].send_signal(signal.SIGKILL)
        self.procs[index].wait(10)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs = []
        self.log.flush()

    def ensure_running(self, n: int) -> None:
        """Restart workers that exited, as a Procfile host does (rq's worker quits when Redis goes away
        in the middle of recording a job's failure; the next worker recovers that job)."""
        self.restarts += sum(1 for p in self.procs if p.poll() is not None)
        self.procs = [p for p in self.procs if p.poll() is None]
        if len(self.procs) < n:
            self.start(n - len(self.procs))


def pending_work(conn: redis.Redis) -> dict[str, int]:
    return {
        "queued": sum(jobs.queue(conn, q).count for q in jobs.QUEUES),
        "started": sum(len(StartedJobRegistry(q, connection=conn).get_job_ids(cleanup=False)) for q in jobs.QUEUES),
        "scheduled": sum(len(ScheduledJobRegistry(q, connection=conn).get_job_ids()) for q in jobs.QUEUES),
    }


def idle(conn: redis.Redis) -> bool:
    try:
        return not any(pending_work(conn).values())
    except redis.RedisError:
        return False


def settle(conn: redis.Redis, workers: Workers, n: int, timeout: float = 90) -> None:
    """Wait until no job is queued, running or scheduled twice in a row (workers kept alive)."""
    deadline = time.monotonic() + timeout
    calm = 0
    while time.monotonic() < deadline:
        workers.ensure_running(n)
        calm = calm + 1 if idle(conn) else 0
        if calm >= 3:
            return
        time.sleep(0.5)
    raise TimeoutError(f"the hub did not settle: {pending_work(conn)}")


