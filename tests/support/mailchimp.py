"""Fixtures for the Mailchimp stand-in and connector, plus a tiny webhook receiver.

Import the fixtures explicitly in a test module::

    from tests.support.mailchimp import mailchimp, mailchimp_standin  # noqa: F401
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import mailchimp_marketing
import pytest
import redis
import requests

from connectors.mailchimp import MailchimpConnector, connect
from connectors.retry import RetryPolicy
from hub.sandbox.common import ServerHandle, serve
from hub.sandbox.mailchimp import MailchimpStandIn, exports
from hub.settings import Settings
from tests.support.procs import wait_for


@dataclass
class MailchimpSandbox:
    """A served stand-in with the helpers tests reach for."""

    handle: ServerHandle

    @property
    def standin(self) -> MailchimpStandIn:
        assert isinstance(self.handle.standin, MailchimpStandIn)
        return self.handle.standin

    @property
    def url(self) -> str:
        return self.handle.url

    @property
    def env(self) -> dict[str, str]:
        return exports(self.url, self.standin)

    @property
    def api_key(self) -> str:
        return self.env["MAILCHIMP_API_KEY"]

    @property
    def list_id(self) -> str:
        return self.env["MAILCHIMP_LIST_ID"]

    def sdk(self, api_key: str | None = None) -> Any:
        """A mailchimp_marketing client aimed at the stand-in (host override, no server rewrite)."""
        client = mailchimp_marketing.Client()
        client.set_config({"api_key": api_key or self.api_key, "timeout": 15})
        client.api_client.host = self.url + "/3.0"
        client.api_client.server = ""
        return client

    def admin(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """POST (with a body) or GET an admin route under /_sandbox/."""
        url = f"{self.url}/_sandbox/{path.lstrip('/')}"
        resp = requests.post(url, json=body, timeout=15) if body is not None else requests.get(url, timeout=15)
        resp.raise_for_status()
        return resp.json()

    def set_faults(self, **values: Any) -> None:
        self.admin("faults", values)

    def stats(self) -> dict[str, Any]:
        return dict(self.admin("stats"))

    def requests_to(self, method: str, rule: str) -> int:
        """How many requests reached ``METHOD /3.0/...rule`` (Flask rule syntax)."""
        return int(self.stats()["requests"].get(f"{method} {rule}", 0))

    def flush_webhooks(self) -> None:
        assert self.standin.sender.wait_idle(15), "webhook deliveries did not finish"


@contextmanager
def running_mailchimp(**options: Any) -> Iterator[MailchimpSandbox]:
    """A stand-in built with ``options`` (clock, data_dir, limits...), served until the block ends."""
    handle = serve(MailchimpStandIn(**options))
    try:
        yield MailchimpSandbox(handle)
    finally:
        handle.stop()


def fast_policy(attempts: int = 6) -> RetryPolicy:
    """Retries that keep tests quick (the real default starts at 0.5 s)."""
    return RetryPolicy(attempts=attempts, base_delay=0.01, max_delay=0.2)


def connector_for(sandbox: MailchimpSandbox, conn: redis.Redis, **options: Any) -> MailchimpConnector:
    options.setdefault("policy", fast_policy())
    options.setdefault("timeout", 15.0)
    return connect(Settings(env=sandbox.env), conn, **options)


@pytest.fixture
def mailchimp_standin() -> Iterator[MailchimpSandbox]:
    with running_mailchimp() as sandbox:
        yield sandbox


@pytest.fixture
def mailchimp(mailchimp_standin: MailchimpSandbox, redis_conn: redis.Redis) -> MailchimpConnector:
    return connector_for(mailchimp_standin, redis_conn)


# -- a local webhook receiver -------------------------------------------------------------------
@dataclass
class Hit:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))


@dataclass
class HookReceiver:
    """Records every request; ``get_status``/``post_statuses`` script its answers."""

    get_status: int = 200
    post_statuses: list[int] = field(default_factory=list)  # consumed first, then 200
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/mailchimp?secret=s3cret"

    def posts(self) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.method == "POST"]

    def forms(self, kind: str | None = None) -> list[dict[str, str]]:
        return [h.form for h in self.posts() if kind is None or h.form.get("type") == kind]

    def wait(self, check: Callable[[HookReceiver], bool], what: str) -> None:
        wait_for(lambda: check(self), timeout=15, what=what)


@contextmanager
def hook_receiver(get_status: int = 200, post_statuses: list[int] | None = None) -> Iterator[HookReceiver]:
    receiver = HookReceiver(get_status=get_status, post_statuses=list(post_statuses or []))

    class Handler(BaseHTTPRequestHandler):
        def _record(self, status: int) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with receiver.lock:
                receiver.hits.append(Hit(self.command, self.path, dict(self.headers), body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            self._record(receiver.get_status)

        def do_POST(self) -> None:
            with receiver.lock:
                status = receiver.post_statuses.pop(0) if receiver.post_statuses else 200
            self._record(status)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.server = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
