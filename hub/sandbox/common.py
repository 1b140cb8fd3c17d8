"""Pieces every stand-in shares: fault injection, rate windows, request stats, a webhook sender,
persistence and a loopback server (waitress, in a thread).

A stand-in is a Flask app built by a :class:`StandIn` subclass. Its state is one JSON-able dict
guarded by ``self.lock``; with a data directory it is saved after changes and loaded at start.
Admin routes under ``/_sandbox/`` let tests and benchmarks set faults, read counters and reset.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import multiprocessing
import os
import queue
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import requests
from flask import Flask, Response, jsonify, request
from waitress.server import create_server

log = logging.getLogger("hub.sandbox")

TIMEOUT = -1  # sentinel status returned by Faults.roll(): answer too late


@dataclass
class Faults:
    """What a stand-in does wrong on purpose. Bounded, seeded, changeable at run time."""

    error_rate: float = 0.0
    error_statuses: list[int] = field(default_factory=lambda: [500])
    timeout_rate: float = 0.0
    timeout_seconds: float = 5.0
    latency_ms: float = 0.0
    webhook_duplicate_rate: float = 0.0
    webhook_reorder_rate: float = 0.0
    seed: int | None = None
    _rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.seed is not None:
            self._rng.seed(self.seed)

    def update(self, values: dict[str, Any]) -> None:
        known = {k for k in asdict(self) if not k.startswith("_")}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown fault setting(s) {sorted(unknown)}; known: {sorted(known)}")
        for key, value in values.items():
            setattr(self, key, value)
        if "seed" in values and values["seed"] is not None:
            self._rng.seed(values["seed"])

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    def chance(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    def roll(self) -> int | None:
        """Status to inject for this request (``TIMEOUT`` for a late answer), or None."""
        if self.chance(self.timeout_rate):
            return TIMEOUT
        if self.chance(self.error_rate):
            return self._rng.choice(self.error_statuses)
        return None

    def delay(self) -> None:
        if self.latency_ms > 0:
            time.sleep(self.latency_ms / 1000.0)


class SlidingWindow:
    """At most ``limit`` events per ``window`` seconds per key (exact, not bucketed)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, now: float | None = None) -> float:
        """Record one event; 0.0 if allowed, else seconds until a slot frees (event not recorded)."""
        t = time.monotonic() if now is None else now
        with self._lock:
            q = self._events.setdefault(key, deque())
            while q and q[0] <= t - self.window:
                q.popleft()
            if len(q) >= self.limit:
                return max(q[0] + self.window - t, 0.001)
            q.append(t)
            return 0.0


class Stats:
    """Counters tests read: requests per route and status, and webhook deliveries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.webhooks: Counter[str] = Counter()

    def count(self, route: str, status: int) -> None:
        with self._lock:
            self.requests[route] += 1
            self.statuses[status] += 1

    def count_webhook(self, outcome: str) -> None:
        with self._lock:
            self.webhooks[outcome] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(self.requests),
                "statuses": {str(k): v for k, v in self.statuses.items()},
                "webhooks": dict(self.webhooks),
            }

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.statuses.clear()
            self.webhooks.clear()


@dataclass
class Delivery:
    url: str
    body: bytes
    headers: dict[str, str]
    attempts: int = 0
    # Called before each attempt so a sender can re-sign (timestamps) or bump attempt numbers.
    prepare: Callable[[Delivery], None] | None = None


class WebhookSender:
    """Delivers webhooks from a background thread, like the vendors do: retries with backoff on
    failure, and — when faults say so — duplicates and out-of-order deliveries."""

    def __init__(
        self,
        faults: Faults,
        stats: Stats,
        *,
        max_attempts: int = 5,
        backoff: float = 0.2,
        timeout: float = 5.0,
    ) -> None:
        self.faults = faults
        self.stats = stats
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.timeout = timeout
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._held: Delivery | None = None
        self._session = requests.Session()
        self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
        self._idle = threading.Event()
        self._idle.set()
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._thread.start()

    def send(self, delivery: Delivery) -> None:
        with self._pending_lock:
            self._pending += 1
            self._idle.clear()
        self._queue.put(delivery)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued delivery is done (tests)."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _done(self, n: int = 1) -> None:
        with self._pending_lock:
            self._pending -= n
            if self._pending <= 0:
                self._pending = 0
                self._idle.set()

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.05)
            except queue.Empty:
                if self._held is not None:  # nothing came to swap with: deliver what we held
                    held, self._held = self._held, None
                    self._deliver(held)
                    self._done()
                continue
            if item is None:
                if self._held is not None:
                    self._deliver(self._held)
                return
            if self._held is None and self.faults.chance(self.faults.webhook_reorder_rate):
                self._held = item  # sent after the next one
                continue
            self._deliver(item)
            if self.faults.chance(self.faults.webhook_duplicate_rate):
                self.stats.count_webhook("duplicated")
                self._deliver(Delivery(item.url, item.body, dict(item.headers), 0, item.prepare))
            self._done()
            if self._held is not None:
                held, self._held = self._held, None
                self.stats.count_webhook("reordered")
                self._deliver(held)
                self._done()

    def _deliver(self, item: Delivery) -> None:
        while item.attempts < self.max_attempts:
            item.attempts += 1
            if item.prepare is not None:
                item.prepare(item)
            try:
                resp = self._session.post(item.url, data=item.body, headers=item.headers, timeout=self.timeout)
                if 200 <= resp.status_code < 300:
                    self.stats.count_webhook("delivered")
                    return
                self.stats.count_webhook(f"status_{resp.status_code}")
            except requests.RequestException:
                self.stats.count_webhook("connection_error")
            time.sleep(self.backoff * (2 ** (item.attempts - 1)))
        self.stats.count_webhook("gave_up")
        log.warning("webhook to %s given up after %d attempts", item.url, item.attempts)


class StandIn:
    """Base of a stand-in service: a Flask app, a state dict, faults, stats and persistence."""

    name = "standin"

    def __init__(self, *, data_dir: str | os.PathLike[str] | None = None, faults: Faults | None = None) -> None:
        self.lock = threading.RLock()
        self.faults = faults or Faults()
        self.stats = Stats()
        self.data_path = Path(data_dir) / f"{self.name}.json" if data_dir else None
        self.state: dict[str, Any] = self.initial_state()
        if self.data_path and self.data_path.exists():
            self.state = json.loads(self.data_path.read_text())
        self.sender = WebhookSender(self.faults, self.stats)
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._saver: threading.Thread | None = None
        if self.data_path:
            self._saver = threading.Thread(target=self._save_loop, name=f"{self.name}-saver", daemon=True)
            self._saver.start()
        self.app = Flask(f"sandbox.{self.name}")
        self.app.config["MAX_CONTENT_LENGTH"] = 50 * 1024 * 1024
        self._install_admin()
        self._install_faults()
        self.register(self.app)

    # -- for subclasses -------------------------------------------------------------------------
    def initial_state(self) -> dict[str, Any]:
        return {}

    def register(self, app: Flask) -> None:
        """Add the vendor's routes to ``app``."""
        raise NotImplementedError

    def error_response(self, status: int, message: str) -> Response:
        """The vendor's error body for ``status``."""
        return Response(json.dumps({"message": message}), status=status, mimetype="application/json")

    def fault_key(self) -> bool:
        """Whether faults apply to the current request (admin routes are exempt)."""
        return not request.path.startswith("/_sandbox/")

    # -- persistence ----------------------------------------------------------------------------
    def changed(self) -> None:
        """Mark the state dirty; it is saved shortly after (with a data directory)."""
        self._dirty.set()

    def save(self) -> None:
        if not self.data_path:
            return
        with self.lock:
            text = json.dumps(self.state, sort_keys=True)
        self.data_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.data_path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.data_path)

    def _save_loop(self) -> None:
        while not self._stop.is_set():
            if self._dirty.wait(0.2):
                self._dirty.clear()
                self.save()

    def close(self) -> None:
        self._stop.set()
        self.sender.close()
        if self._saver is not None:
            self._saver.join(timeout=2)
        self.save()

    def reset(self) -> None:
        with self.lock:
            self.state = self.initial_state()
        self.stats.reset()
        self.changed()

    # -- app plumbing ---------------------------------------------------------------------------
    def _install_faults(self) -> None:
        @self.app.before_request
        def _inject() -> Response | None:
            if not self.fault_key():
                return None
            self.faults.delay()
            status = self.faults.roll()
            if status is None:
                return None
            if status == TIMEOUT:
                time.sleep(self.faults.timeout_seconds)
                return self.error_response(504, "injected timeout")
            return self.error_response(status, "injected fault")

        @self.app.after_request
        def _count(resp: Response) -> Response:
            if not request.path.startswith("/_sandbox/"):
                rule = request.url_rule.rule if request.url_rule else request.path
                self.stats.count(f"{request.method} {rule}", resp.status_code)
            return resp

    def _install_admin(self) -> None:
        app = self.app

        @app.get("/_sandbox/stats")
        def _stats() -> Response:
            return jsonify(self.stats.snapshot())

        @app.route("/_sandbox/faults", methods=["GET", "POST"])
        def _faults() -> Response:
            if request.method == "POST":
                try:
                    self.faults.update(request.get_json(force=True) or {})
                except ValueError as exc:
                    return Response(json.dumps({"error": str(exc)}), 400, mimetype="application/json")
            return jsonify(self.faults.as_dict())

        @app.post("/_sandbox/reset")
        def _reset() -> Response:
            self.reset()
            return jsonify({"ok": True})

        @app.post("/_sandbox/stats/reset")
        def _reset_stats() -> Response:
            self.stats.reset()
            return jsonify({"ok": True})

        @app.post("/_sandbox/webhooks/flush")
        def _flush() -> Response:
            return jsonify({"idle": self.sender.wait_idle(float(request.args.get("timeout", 10)))})


# Worker threads per stand-in: enough that requests held by injected time-outs (each one sleeps in
# its thread) do not hold up the others.
THREADS = 32


class ServerHandle:
    """A stand-in served on loopback by waitress from a background thread.

    Not werkzeug's development server: it closes the connection after every answer, so each
    request cost the hub a new TCP connection and the stand-in a new thread, where a vendor's
    API keeps connections alive."""

    def __init__(self, standin: StandIn, server: Any, thread: threading.Thread) -> None:
        self.standin = standin
        self.server = server
        self.thread = thread

    @property
    def port(self) -> int:
        return int(self.server.effective_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Close every socket from the server's own loop (which then ends), then its threads."""
        loop = self.server._map  # the listening socket, the loop's wake-up pipe and each connection

        def close_all() -> None:
            for dispatcher in list(loop.values()):
                dispatcher.close()

        try:
            self.server.trigger.pull_trigger(close_all)
        except OSError:  # the wake-up pipe is closed already (seen once in CI): close from here
            close_all()
        self.thread.join(timeout=5)
        self.server.task_dispatcher.shutdown(timeout=2)
        self.standin.close()


def serve(standin: StandIn, port: int = 0, host: str = "127.0.0.1") -> ServerHandle:
    """Serve ``standin`` on ``host:port`` (0 picks a free port) from a daemon thread."""
    server = create_server(
        standin.app, host=host, port=port, threads=THREADS, connection_limit=1000, ident=f"sandbox-{standin.name}"
    )
    thread = threading.Thread(target=server.run, name=f"sandbox-{standin.name}", daemon=True)
    thread.start()
    return ServerHandle(standin, server, thread)


class ApartHandle:
    """A stand-in served from a child process of its own, as the real service runs apart from the
    hub: it takes no share of the caller's GIL, and its CPU can be read on its own (``pid``)."""

    def __init__(self, proc: BaseProcess, pipe: Connection, env: dict[str, str]) -> None:
        self.proc = proc
        self.pipe = pipe
        self.env = env

    @property
    def pid(self) -> int:
        assert self.proc.pid is not None  # started by serve_apart
        return self.proc.pid

    def stop(self) -> None:
        with contextlib.suppress(OSError):  # the child is gone already
            self.pipe.send(None)
        self.pipe.close()
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


def _serve_child(
    make: Callable[[], StandIn], exports: Callable[[str, Any], dict[str, str]], here: Connection, there: Connection
) -> None:
    here.close()  # so that the parent's end closing (or its death) ends recv() below
    handle = serve(make())
    # The process holds every record it is sent: the collector's walks over them grow with the data
    # (~15 % of the Mailchimp stand-in's CPU in bench/engine.py). What start-up built is frozen out
    # of them, and young collections come less often (as in the hub's workers).
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, *gc.get_threshold()[1:])
    try:
        there.send(exports(handle.url, handle.standin))
        there.recv()
    except EOFError:
        pass
    finally:
        handle.stop()


def serve_apart(make: Callable[[], StandIn], exports: Callable[[str, Any], dict[str, str]]) -> ApartHandle:
    """Serve the stand-in ``make()`` builds from a forked child process, on a free loopback port;
    ``exports(url, standin)`` gives the settings returned in ``ApartHandle.env``. The stand-in is
    built in the child: its threads (webhook sender, saver) must live there."""
    ctx = multiprocessing.get_context("fork")
    here, there = ctx.Pipe()
    proc = ctx.Process(target=_serve_child, args=(make, exports, here, there), daemon=True)
    proc.start()
    there.close()
    if not here.poll(30):
        proc.kill()
        raise RuntimeError("the stand-in's process did not start within 30 s")
    return ApartHandle(proc, here, here.recv())


def new_id(prefix: str, length: int = 14, rng: random.Random | None = None) -> str:
    """Vendor-shaped ids: ``rec`` + 14 base62 characters and the like."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    r = rng or random.SystemRandom()
    return prefix + "".join(r.choice(alphabet) for _ in range(length))


def iso_now() -> str:
    """Vendor timestamps are real wall-clock UTC, millisecond precision, ``Z`` suffix."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"
