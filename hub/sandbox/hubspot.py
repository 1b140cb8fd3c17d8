"""A local stand-in of HubSpot's CRM v3 API, as hubspot-api-client 12 talks to it.

Private-app bearer tokens, per-token rate limits with HubSpot's headers and 429 bodies, CRM
objects (basic, batch, search), associations v4, properties, pipelines and webhooks v3 with
signed, batched deliveries. Routes live in the ``hubspot_*`` modules, one concern each.

Run it alone with ``python -m hub.sandbox.hubspot --port 8091 --data ./sandbox-data``; it prints
the ``export NAME=value`` lines a hub needs.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any

import orjson
from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from hub.sandbox import (
    hubspot_assoc,
    hubspot_batch,
    hubspot_hooks,
    hubspot_meta,
    hubspot_objects,
    hubspot_search,
)
from hub.sandbox.common import Faults, SlidingWindow, StandIn, serve
from hub.sandbox.hubspot_builtins import default_pipelines
from hub.sandbox.hubspot_schema import PORTAL_ID, ApiError

DEFAULT_TOKEN = "pat-na1-5a9d6c2e-8b1f-4e3a-9c7d-0f1e2d3c4b5a"
CLIENT_SECRET = "7c0f4a52-3e1b-4d9a-8f6e-sandbox-secret"
DEVELOPER_API_KEY = "b3e1c2d4-5f6a-4b7c-8d9e-0a1b2c3d4e5f"
APP_ID = 2500001
_AUTH_MESSAGE = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find "
    "more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)


class RollingWindow(SlidingWindow):
    """A :class:`SlidingWindow` that can also say how much room is left (for the headers)."""

    def remaining(self, key: str) -> int:
        now = time.monotonic()
        with self._lock:
            q = self._events.get(key, deque())
            return max(self.limit - sum(1 for t in q if t > now - self.window), 0)


class HubSpotStandIn(StandIn):
    """HubSpot CRM for one portal and one public app (for webhooks)."""

    name = "hubspot"

    def __init__(
        self,
        *,
        data_dir: str | None = None,
        faults: Faults | None = None,
        tokens: list[str] | None = None,
        portal_id: int = PORTAL_ID,
        app_id: int = APP_ID,
        client_secret: str = CLIENT_SECRET,
        developer_api_key: str = DEVELOPER_API_KEY,
        rate_limit: int = 190,
        rate_interval: float = 10.0,
        search_rate: int = 4,
        daily_limit: int = 1_000_000,
        search_max_results: int = 10_000,
        webhook_window: float = 0.05,
        shuffle_batches: bool = True,
    ) -> None:
        if rate_limit < 1 or search_rate < 1 or rate_interval <= 0:
            raise ValueError(
                f"rate limits must be positive: {rate_limit!r}/{rate_interval!r}s, search {search_rate!r}/s"
            )
        self.tokens = list(tokens) if tokens is not None else [DEFAULT_TOKEN]
        self.portal_id = portal_id
        self.app_id = app_id
        self.client_secret = client_secret
        self.developer_api_key = developer_api_key
        self.rate_limit = rate_limit
        self.rate_interval = rate_interval
        self.daily_limit = daily_limit
        self.search_max_results = search_max_results
        self.shuffle_batches = shuffle_batches
        self.window = RollingWindow(rate_limit, rate_interval)
        self.search_window = RollingWindow(search_rate, 1.0)
        self._daily: dict[str, int] = {}
        self._daily_lock = threading.Lock()
        self.hooks = hubspot_hooks.Hooks(self, window=webhook_window)
        super().__init__(data_dir=data_dir, faults=faults)

    # -- StandIn hooks --------------------------------------------------------------------------
    def initial_state(self) -> dict[str, Any]:
        return {
            "next_id": 1001,
            "objects": {},  # type -> id -> {"id", "properties", "createdAt", "updatedAt", "archived"}
            "properties": {},  # type -> name -> definition (custom ones only)
            "groups": {},  # type -> name -> group (custom ones only)
            "pipelines": default_pipelines(),
            "associations": {},  # "type:id" -> to_type -> to_id -> [type ids]
            "webhooks": {"settings": None, "subscriptions": {}, "next_subscription": 1, "next_event": 1},
        }

    def register(self, app: Flask) -> None:
        app.before_request(self._authenticate)
        app.after_request(self._rate_headers)
        app.register_error_handler(ApiError, self._api_error)
        app.register_error_handler(HTTPException, self._http_error)
        for module in (
            hubspot_objects,
            hubspot_batch,
            hubspot_search,
            hubspot_assoc,
            hubspot_meta,
            hubspot_hooks,
        ):
            module.register(self, app)

    def error_response(self, status: int, message: str) -> Response:
        if status == 429:
            return self._rate_limited("TEN_SECONDLY_ROLLING")
        category = "INTERNAL_ERROR" if status >= 500 else "VALIDATION_ERROR"
        return self._json(ApiError(status, message, category).body(), status)

    # -- helpers the route modules share --------------------------------------------------------
    def new_id(self) -> str:
        with self.lock:
            value = int(self.state["next_id"])
            self.state["next_id"] = value + 1
        return str(value)

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def body(self) -> dict[str, Any]:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise ApiError(400, "Invalid input JSON on line 1, column 1: expected a JSON object")
        return data

    def json(self, payload: Any, status: int = 200) -> Response:
        return self._json(payload, status)

    @staticmethod
    def _json(payload: Any, status: int) -> Response:
        return Response(orjson.dumps(payload), status=status, mimetype="application/json")

    # -- auth and rate limits -------------------------------------------------------------------
    def _authenticate(self) -> Response | None:
        if request.path.startswith("/_sandbox/"):
            return None
        if request.path.startswith("/webhooks/"):
            key = request.args.get("hapikey", "")
            if key != self.developer_api_key:
                raise ApiError(
                    401,
                    "The API key provided is invalid. View or manage your API key here: "
                    "https://app.hubspot.com/l/api-key/",
                    "INVALID_AUTHENTICATION",
                )
            principal = "hapikey:" + key
        else:
            header = request.headers.get("Authorization", "")
            token = header[7:].strip() if header.lower().startswith("bearer ") else ""
            if token not in self.tokens:
                raise ApiError(401, _AUTH_MESSAGE, "INVALID_AUTHENTICATION")
            principal = token
        g.hs_principal = principal
        if self.window.hit(principal):
            return self._rate_limited("TEN_SECONDLY_ROLLING")
        if request.method == "POST" and request.path.endswith("/search") and self.search_window.hit(principal):
            return self._rate_limited("SECONDLY")
        with self._daily_lock:
            day_key = f"{principal}:{datetime.now(UTC).date()}"
            self._daily[day_key] = self._daily.get(day_key, 0) + 1
            if self._daily[day_key] > self.daily_limit:
                return self._rate_limited("DAILY")
        return None

    def _rate_limited(self, policy: str) -> Response:
        label = {"TEN_SECONDLY_ROLLING": "ten_secondly_rolling", "SECONDLY": "secondly", "DAILY": "daily"}[policy]
        body = {
            "status": "error",
            "message": f"You have reached your {label} limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()),
            "policyName": policy,
            "requestId": str(uuid.uuid4()),
        }
        return self._json(body, 429)

    def _rate_headers(self, resp: Response) -> Response:
        principal = g.get("hs_principal")
        if principal is None:
            return resp
        with self._daily_lock:
            used = self._daily.get(f"{principal}:{datetime.now(UTC).date()}", 0)
        resp.headers["X-HubSpot-RateLimit-Max"] = str(self.rate_limit)
        resp.headers["X-HubSpot-RateLimit-Remaining"] = str(self.window.remaining(principal))
        resp.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] = str(int(self.rate_interval * 1000))
        resp.headers["X-HubSpot-RateLimit-Daily"] = str(self.daily_limit)
        resp.headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(max(self.daily_limit - used, 0))
        return resp

    # -- errors ---------------------------------------------------------------------------------
    def _api_error(self, exc: ApiError) -> Response:
        return self._json(exc.body(), exc.status)

    def _http_error(self, exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 404:
            return self._json(
                ApiError(404, f"Unable to route {request.method} {request.path}", "OBJECT_NOT_FOUND").body(),
                404,
            )
        return self._json(ApiError(status, exc.description or exc.name, "VALIDATION_ERROR").body(), status)

    def reset(self) -> None:
        """Back to a fresh portal: state, counters and rate windows."""
        super().reset()
        self.window = RollingWindow(self.rate_limit, self.rate_interval)
        self.search_window = RollingWindow(self.search_window.limit, 1.0)
        with self._daily_lock:
            self._daily.clear()
        self.hooks.close()

    def close(self) -> None:
        self.hooks.close()
        super().close()


def exports(url: str, standin: HubSpotStandIn) -> dict[str, str]:
    """The settings a hub needs to talk to this stand-in at ``url``."""
    return {
        "HUBSPOT_HOST": url,
        "HUBSPOT_ACCESS_TOKEN": standin.tokens[0],
        "HUBSPOT_CLIENT_SECRET": standin.client_secret,
        "HUBSPOT_APP_ID": str(standin.app_id),
        "HUBSPOT_PORTAL_ID": str(standin.portal_id),
        "HUBSPOT_DEVELOPER_API_KEY": standin.developer_api_key,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local HubSpot stand-in (loopback only)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--data", default=None, help="directory to persist state in")
    args = parser.parse_args(argv)
    standin = HubSpotStandIn(data_dir=args.data)
    handle = serve(standin, args.port)
    for key, value in exports(handle.url, standin).items():
        print(f"export {key}={value}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        handle.stop()


if __name__ == "__main__":
    main()
