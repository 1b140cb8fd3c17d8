"""End-to-end harness: the four stand-ins, a real Redis, a hub Runtime on a config directory, and
workers run in-process (burst) so tests can pin the clock between steps.

The stand-ins run with relaxed rate limits (the quota behaviour has its own tests); everything
else — SDKs, HTTP, Redis scripts, job queues — is the real path.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from werkzeug.serving import make_server

from connectors.airtable import AirtableConnector
from connectors.firestore import FirestoreConnector
from connectors.hubspot import HubSpotConnector
from connectors.retry import RetryPolicy
from hub import clock, jobs
from hub.engine import waits
from hub.engine.provision import provision
from hub.runtime import Runtime
from hub.sandbox import airtable, hubspot, mailchimp
from hub.sandbox.common import ServerHandle, serve
from hub.sandbox.firestore import EmulatorMissing, FirestoreEmulator
from hub.settings import Settings
from hub.worker import build

ROOT = Path(__file__).resolve().parents[2]
FAST = RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.5)


@dataclass
class Stack:
    handles: dict[str, ServerHandle] = field(default_factory=dict)
    firestore: FirestoreEmulator | None = None
    env: dict[str, str] = field(default_factory=dict)

    def reset(self) -> None:
        for h in self.handles.values():
            h.standin.sender.wait_idle(5)
            h.standin.reset()
            h.standin.faults.update({"error_rate": 0.0, "timeout_rate": 0.0, "latency_ms": 0.0,
                                     "webhook_duplicate_rate": 0.0, "webhook_reorder_rate": 0.0})
        if self.firestore is not None:
            self.firestore.reset()


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    st = Stack()
    at = airtable.AirtableStandIn(rate_limit=10_000, penalty_seconds=1)
    st.handles["airtable"] = serve(at)
    st.env.update(airtable.exports(st.handles["airtable"].url, at))
    hs = hubspot.HubSpotStandIn(rate_limit=1_000_000, search_rate=10_000, webhook_window=0.02)
    st.handles["hubspot"] = serve(hs)
    st.env.update(hubspot.exports(st.handles["hubspot"].url, hs))
    mc = mailchimp.MailchimpStandIn()
    st.handles["mailchimp"] = serve(mc)
    st.env.update(mailchimp.exports(st.handles["mailchimp"].url, mc))
    try:
        st.firestore = FirestoreEmulator()
        st.firestore.start()
        st.env.update(st.firestore.exports())
    except EmulatorMissing:
        if os.environ.get("CI") == "true":
            raise
        st.firestore = None
    yield st
    for h in st.handles.values():
        h.stop()
    if st.firestore is not None:
        st.firestore.stop(save=False)


class Hub:
    """One test's hub: its config, runtime and helpers to drive it."""

    def __init__(self, stack: Stack, conn: redis.Redis, redis_url: str, tmp: Path) -> None:
        self.stack = stack
        self.redis = conn
        self.redis_url = redis_url
        self.tmp = tmp
        self.rt: Runtime | None = None
        self.extra_env: dict[str, str] = {}

    # -- setup ------------------------------------------------------------------------------------
    def env(self, config_dir: Path, **extra: str) -> dict[str, str]:
        return {**os.environ, **self.stack.env, "REDIS_URL": self.redis_url, "HUB_CONFIG": str(config_dir),
                **self.extra_env, **extra}

    def use(self, config: str | Path, *, files: dict[str, str] | None = None, **extra_env: str) -> Runtime:
        """Load a config directory (a copy of an example pack, or ``files`` written into a fresh one)."""
        target = self.tmp / "config"
        if target.exists():
            shutil.rmtree(target)
        if files is None:
            src = Path(config)
            shutil.copytree(src if src.is_absolute() else ROOT / src, target)
        else:
            for rel, text in files.items():
                path = target / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        self.extra_env = dict(extra_env)
        settings = Settings(self.env(target))
        rt = Runtime(settings, config_dir=target, conn=self.redis, reload_interval=3600)
        assert rt.config.ok, "\n".join(str(i) for i in rt.config.issues)
        s = self.stack.env
        rt.use_connector("airtable", AirtableConnector(s["AIRTABLE_API_KEY"], endpoint_url=s["AIRTABLE_ENDPOINT_URL"],
                                                       conn=self.redis, rate=5000, policy=FAST, typecast=True))
        rt.use_connector("hubspot", HubSpotConnector(s["HUBSPOT_ACCESS_TOKEN"], self.redis, host=s["HUBSPOT_HOST"],
                                                     developer_api_key=s.get("HUBSPOT_DEVELOPER_API_KEY"),
                                                     rate=1_000_000, search_rate=10_000, policy=FAST))
        if self.stack.firestore is not None:
            rt.use_connector("firestore", FirestoreConnector(project=s["GOOGLE_CLOUD_PROJECT"],
                                                             emulator_host=s["FIRESTORE_EMULATOR_HOST"],
                                                             conn=self.redis, policy=FAST))
        Runtime.install(rt)
        self.rt = rt
        provision(rt)
        return rt

    # -- driving ----------------------------------------------------------------------------------
    def pin(self, when: str) -> None:
        clock.pin(when)

    def work(self, rounds: int = 20) -> int:
        """Release due waits and run every queued job (in this process) until nothing is left."""
        assert self.rt is not None
        total = 0
        for _ in range(rounds):
            waits.release(self.redis)
            queued = sum(jobs.queue(self.redis, q).count for q in jobs.QUEUES)
            if not queued:
                return total
            worker = build(self.redis)
            worker.work(burst=True, with_scheduler=False, logging_level="WARNING")
            total += queued
        raise AssertionError("jobs kept coming after 20 rounds: a loop?")

    def ingest(self, system: str, coll: str, ids: list[str], kind: str = "updated", base: str = "") -> None:
        """What an intake does for a webhook: enqueue one batch job of source events."""
        events = [{"system": system, "coll": coll, "id": i, "kind": kind, "base": base} for i in ids]
        jobs.enqueue(self.redis, "hub.engine.intake.handle_events", system, events, queue_name=jobs.QUEUE_HIGH)

    def failed(self) -> list[str]:
        from rq.registry import FailedJobRegistry

        out = []
        for q in jobs.QUEUES:
            reg = FailedJobRegistry(q, connection=self.redis, serializer=jobs.HubSerializer)
            for jid in reg.get_job_ids():
                job = jobs.queue(self.redis, q).fetch_job(jid)
                out.append(f"{job.func_name if job else jid}: {job.meta.get('reason') if job else ''}")
        return out

    def connector(self, system: str) -> Any:
        assert self.rt is not None
        return self.rt.connector(system)

    def stats(self, system: str) -> dict[str, Any]:
        return self.stack.handles[system].standin.stats.snapshot()

    def hubspot_writes(self) -> int:
        """Record writes HubSpot has received so far (not searches, reads or schema calls)."""
        return sum(
            n
            for k, n in self.stats("hubspot")["requests"].items()
            if k.split()[0] in ("POST", "PATCH") and not any(p in k for p in ("/search", "/properties", "batch/read"))
        )

    @contextmanager
    def served(self) -> Iterator[str]:
        """The hub's web app on a loopback port (for the stand-ins' webhook senders)."""
        from hub.app import create_app

        assert self.rt is not None
        app = create_app(self.rt.settings, config_dir=self.rt.config_dir, conn=self.redis)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            thread.join(5)


@pytest.fixture
def hub(stack: Stack, redis_conn: redis.Redis, redis_url: str, tmp_path: Path) -> Iterator[Hub]:
    stack.reset()
    h = Hub(stack, redis_conn, redis_url, tmp_path)
    yield h
    from tests.support.workers import stop_all

    stop_all()
    Runtime.install(None)
    clock.pin(None)


@pytest.fixture
def needs_firestore(stack: Stack) -> None:
    if stack.firestore is None:
        pytest.skip("the Firestore emulator (google-cloud-cli-firestore-emulator) is not installed")
