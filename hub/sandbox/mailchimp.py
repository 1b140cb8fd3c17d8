"""A local stand-in for the Mailchimp Marketing API 3.0, as mailchimp-marketing 3.0.80 calls it.

It keeps audiences (lists), members, merge fields, tags, events and list webhooks, and behaves the
way the hub must cope with: HTTP basic auth with a ``<32 hex>-<dc>`` key, errors as
``application/problem+json`` with Mailchimp's titles, at most 10 simultaneous connections per
API key (the 11th gets a 429), batch subscribe capped at 500 members, compliance rules for
forgotten and unsubscribed addresses, and form-encoded list webhooks.

Routes live under ``/3.0/``: lists and merge fields in :mod:`hub.sandbox.mailchimp_lists`, members
in :mod:`hub.sandbox.mailchimp_members` (write rules in :mod:`hub.sandbox.mailchimp_upsert`), list
webhooks and the "a contact did something" simulations in :mod:`hub.sandbox.mailchimp_hooks`.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from hub.sandbox.common import Faults, StandIn, serve
from hub.sandbox.mailchimp_hooks import fire, register_hook_routes
from hub.sandbox.mailchimp_http import problem_response
from hub.sandbox.mailchimp_lists import SEED_LIST, new_list, register_list_routes
from hub.sandbox.mailchimp_members import register_member_routes
from hub.sandbox.mailchimp_model import Problem, not_found

DEFAULT_API_KEY = "5a4db0c05a4db0c05a4db0c05a4db0c0-us1"
DEFAULT_LIST_ID = "hubsandbx1"
CONNECTION_LIMIT = 10
API_KEY = re.compile(r"^[0-9a-f]{32}-[a-z]+[0-9]+$")
TITLES = {
    400: "Bad Request",
    401: "API Key Invalid",
    403: "Forbidden",
    404: "Resource Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def key_id(api_key: str) -> str:
    """How a key is named in counters and admin output (never the key itself)."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


class MailchimpStandIn(StandIn):
    """Mailchimp Marketing API 3.0 on loopback. ``clock`` (epoch seconds) drives every timestamp,
    so tests can step time; ``gate`` holds admitted requests (``hold()``/``release()``) so tests
    can fill the connection limit deterministically."""

    name = "mailchimp"

    def __init__(
        self,
        *,
        api_keys: list[str] | None = None,
        list_id: str = DEFAULT_LIST_ID,
        connection_limit: int = CONNECTION_LIMIT,
        max_merge_fields: int = 30,
        probe_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        data_dir: str | None = None,
        faults: Faults | None = None,
    ) -> None:
        keys = list(api_keys) if api_keys is not None else [DEFAULT_API_KEY]
        bad = [k for k in keys if not isinstance(k, str) or not API_KEY.match(k)]
        if not keys or bad:
            raise ValueError(
                f"api_keys must be non-empty '<32 hex>-<dc>' keys (like {DEFAULT_API_KEY!r}); bad: {bad!r}"
            )
        if connection_limit < 1:
            raise ValueError(f"connection_limit must be ≥ 1, got {connection_limit!r}")
        self.api_keys = keys
        self.default_list_id = list_id
        self.connection_limit = connection_limit
        self.max_merge_fields = max_merge_fields
        self.probe_timeout = probe_timeout
        self.clock = clock
        self.gate = threading.Event()
        self.gate.set()
        self._conn_lock = threading.Lock()
        self._inflight: Counter[str] = Counter()
        self._peak: Counter[str] = Counter()
        super().__init__(data_dir=data_dir, faults=faults)

    # -- state ------------------------------------------------------------------------------------
    def initial_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"lists": {}, "next_web_id": 100001}
        state["lists"][self.default_list_id] = new_list(self, self.default_list_id, SEED_LIST, state)
        return state

    def now(self) -> float:
        return self.clock()

    def get_list(self, list_id: str) -> dict[str, Any]:
        lst = self.state["lists"].get(list_id)
        if lst is None:
            raise not_found()
        return lst

    def next_web_id(self) -> int:
        self.state["next_web_id"] += 1
        return int(self.state["next_web_id"])

    def base_url(self) -> str:
        return request.host_url.rstrip("/") + "/3.0"

    def fire(
        self,
        lst: dict[str, Any],
        kind: str,
        source: str,
        member: dict[str, Any] | None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Queue the list webhooks that want ``kind`` from ``source`` (call under ``self.lock``)."""
        fire(self, lst, kind, source, member, extra or {})

    # -- connections and test hooks ---------------------------------------------------------------
    def inflight(self, api_key: str = DEFAULT_API_KEY) -> int:
        with self._conn_lock:
            return self._inflight[key_id(api_key)]

    def peak(self, api_key: str = DEFAULT_API_KEY) -> int:
        with self._conn_lock:
            return self._peak[key_id(api_key)]

    def hold(self) -> None:
        """Admitted requests wait (counted as connections) until :meth:`release`."""
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def reset(self) -> None:
        super().reset()
        with self._conn_lock:
            self._peak.clear()

    # -- HTTP plumbing ----------------------------------------------------------------------------
    def error_response(self, status: int, message: str) -> Response:
        return problem_response(Problem(status, TITLES.get(status, "Error"), message))

    def _admit(self) -> Response | None:
        """Authenticate, then count the connection (429 past the limit); admin routes are free."""
        if request.path.startswith("/_sandbox/"):
            return None
        auth = request.authorization
        password = auth.password if auth is not None and auth.type == "basic" else None
        if not password:
            return problem_response(Problem(401, "API Key Missing", "Your request did not include an API key."))
        if password not in self.api_keys:
            return problem_response(
                Problem(
                    401,
                    "API Key Invalid",
                    "Your API key may be invalid, or you've attempted to access the wrong data center.",
                )
            )
        kid = key_id(password)
        with self._conn_lock:
            if self._inflight[kid] >= self.connection_limit:
                return problem_response(
                    Problem(
                        429,
                        "Too Many Requests",
                        f"You have exceeded the limit of {self.connection_limit} simultaneous connections.",
                    )
                )
            self._inflight[kid] += 1
            self._peak[kid] = max(self._peak[kid], self._inflight[kid])
        g.mailchimp_key = kid
        self.gate.wait(timeout=60)
        return None

    def _leave(self, _exc: BaseException | None) -> None:
        kid = g.pop("mailchimp_key", None)
        if kid is not None:
            with self._conn_lock:
                self._inflight[kid] -= 1

    def register(self, app: Flask) -> None:
        # Admission runs before the fault hooks so injected latency counts as an open connection.
        app.before_request_funcs.setdefault(None, []).insert(0, self._admit)
        app.teardown_request(self._leave)
        app.register_error_handler(Problem, problem_response)
        app.register_error_handler(HTTPException, self._http_error)
        register_list_routes(self, app)
        register_member_routes(self, app)
        register_hook_routes(self, app)

        @app.route("/_sandbox/connections", methods=["GET", "POST"])
        def _connections() -> Response:
            if request.method == "POST":
                hold = (request.get_json(force=True, silent=True) or {}).get("hold")
                (self.hold if hold else self.release)()
            with self._conn_lock:
                return jsonify(
                    {
                        "limit": self.connection_limit,
                        "held": not self.gate.is_set(),
                        "inflight": dict(self._inflight),
                        "peak": dict(self._peak),
                    }
                )

    def _http_error(self, exc: HTTPException) -> Response:
        status = exc.code or 500
        detail = {
            404: "The requested resource could not be found.",
            405: "The requested method and resource are not compatible. See the Allow header for this "
            "resource's available methods.",
        }.get(status, exc.description or "")
        return problem_response(Problem(status, TITLES.get(status, "Error"), detail))


def exports(url: str, standin: MailchimpStandIn) -> dict[str, str]:
    """Settings that point the hub at this stand-in. ``MAILCHIMP_HOST`` is the base URL without
    ``/3.0`` (the connector appends it), as for a real data center: https://us1.api.mailchimp.com."""
    return {
        "MAILCHIMP_HOST": url.rstrip("/"),
        "MAILCHIMP_API_KEY": standin.api_keys[0],
        "MAILCHIMP_LIST_ID": standin.default_list_id,
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m hub.sandbox.mailchimp``: serve the stand-in and print the settings to export."""
    parser = argparse.ArgumentParser(description="Serve the Mailchimp stand-in on loopback.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--data", default=None, help="directory to persist state in")
    parser.add_argument("--connections", type=int, default=CONNECTION_LIMIT, help="simultaneous connections per key")
    args = parser.parse_args(argv)
    standin = MailchimpStandIn(data_dir=args.data, connection_limit=args.connections)
    handle = serve(standin, args.port)
    for key, value in exports(handle.url, standin).items():
        print(f"export {key}={value}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        handle.stop()


if __name__ == "__main__":
    main()
