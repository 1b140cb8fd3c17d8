"""Airtable test support: a served stand-in, a connector wired to it, and the load worker that
the load test and ``bench/airtable_quota.py`` run in separate processes."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
import requests

from connectors.airtable import AirtableConnector
from connectors.base import Collection, Write
from connectors.retry import RetryPolicy
from hub.sandbox.airtable import DEFAULT_BASE, DEFAULT_TOKEN, AirtableStandIn
from hub.sandbox.common import ServerHandle, serve
from tests.support.procs import python_env, wait_for

PENALTY = 1.0  # seconds of 429s after a rate-limit breach in tests (Airtable's is 30)


def quiet_werkzeug() -> None:
    """One access-log line per request drowns a failing test's output."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def fast_policy() -> RetryPolicy:
    """Short backoffs so tests that inject failures stay quick; still bounded at 6 attempts."""
    return RetryPolicy(attempts=6, base_delay=0.05, max_delay=2.0)


@pytest.fixture
def airtable_standin() -> Iterator[ServerHandle]:
    """A fresh stand-in at Airtable's real 5 requests/s per base, with a 1 s penalty."""
    quiet_werkzeug()
    handle = serve(AirtableStandIn(penalty_seconds=PENALTY))
    yield handle
    handle.stop()


@pytest.fixture
def airtable(airtable_standin: ServerHandle, redis_conn: redis.Redis) -> AirtableConnector:
    """A connector on the stand-in whose quota is shared through the test's Redis."""
    return AirtableConnector(
        DEFAULT_TOKEN, endpoint_url=airtable_standin.url, conn=redis_conn, penalty_seconds=PENALTY,
        timeout=(2, 10), policy=fast_policy(),
    )


def admin(handle_or_url: ServerHandle | str, path: str, body: dict[str, Any] | None = None) -> Any:
    """GET (or POST ``body`` to) a ``/_sandbox/`` admin route."""
    url = (handle_or_url if isinstance(handle_or_url, str) else handle_or_url.url) + path
    resp = requests.post(url, json=body, timeout=30) if body is not None else requests.get(url, timeout=30)
    resp.raise_for_status()
    return resp.json()


def requests_to(stats: dict[str, Any], method: str, rule: str = "/v0/<base_id>/<table>") -> int:
    return int(stats["requests"].get(f"{method} {rule}", 0))


class PingReceiver:
    """A tiny loopback HTTP server that records what webhooks POST to it."""

    def __init__(self) -> None:
        self.pings: list[tuple[dict[str, str], bytes]] = []
        received = self.pings

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append((dict(self.headers), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/airtable"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ping_receiver() -> Iterator[PingReceiver]:
    receiver = PingReceiver()
    yield receiver
    receiver.stop()


# -- the load worker ------------------------------------------------------------------------------
LOAD_FIELDS = ("Key", "Name", "N")


def push_worker(
    endpoint: str, redis_url: str, table: str, start: int, count: int, gate: str, margin: float = 0.05
) -> None:
    """Upsert ``count`` records keyed ``k00000``… from ``start``; waits at the Redis ``gate`` so
    all workers begin together, then prints a JSON summary (times are wall clock)."""
    conn = redis.Redis.from_url(redis_url)
    connector = AirtableConnector(DEFAULT_TOKEN, endpoint_url=endpoint, conn=conn, timeout=(5, 30), margin=margin)
    writes = [Write(fields={"Key": f"k{i:05d}", "Name": f"Client {i}", "N": i}, match="Key")
              for i in range(start, start + count)]
    conn.incr(f"{gate}:ready")
    if conn.blpop([f"{gate}:go"], timeout=120) is None:
        raise SystemExit("the start gate never opened")
    began = time.time()
    written = connector.upsert_many(Collection(table, DEFAULT_BASE), writes)
    print(json.dumps({"written": len(written), "began": began, "ended": time.time()}), flush=True)


def run_load(url: str, redis_url: str, table: str, *, workers: int = 4, per_worker: int = 500,
             margin: float = 0.05, timeout: float = 600.0) -> dict[str, Any]:
    """Run ``workers`` worker processes against the stand-in at ``url``; returns what they did
    and what the stand-in saw (its stats are reset first)."""
    quiet_werkzeug()
    conn = redis.Redis.from_url(redis_url)
    gate = f"hub:test:gate:{uuid.uuid4().hex}"
    admin(url, "/_sandbox/stats/reset", {})
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.support.airtable", url, redis_url, table, str(w * per_worker),
             str(per_worker), gate, str(margin)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=python_env(), text=True,
        )
        for w in range(workers)
    ]
    try:
        wait_for(lambda: int(conn.get(f"{gate}:ready") or 0) == workers, timeout=60, what="load workers")
        conn.rpush(f"{gate}:go", *range(workers))
        deadline = time.monotonic() + timeout
        reports = []
        for proc in procs:
            out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
            if proc.returncode != 0:
                raise RuntimeError(f"load worker failed ({proc.returncode}): {err[-2000:]}")
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        conn.delete(f"{gate}:ready", f"{gate}:go")
    stats = admin(url, "/_sandbox/stats")
    return {
        "written": sum(r["written"] for r in reports),
        "elapsed": max(r["ended"] for r in reports) - min(r["began"] for r in reports),
        "requests": sum(stats["requests"].values()),
        "statuses": stats["statuses"],
        "rate_limited": int(stats["statuses"].get("429", 0)),
    }


if __name__ == "__main__":
    push_worker(*sys.argv[1:4], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], float(sys.argv[7]))
