"""A local stand-in for Airtable's Web API (records, meta/schema, webhooks), served over HTTP so
pyairtable talks to it exactly as to api.airtable.com.

It keeps Airtable's contract where the hub depends on it: bearer personal access tokens, 10
records per write, 100 per page with opaque offsets, ``filterByFormula``, ``performUpsert``,
typed fields with ``typecast``, Airtable's error bodies, and the 5 requests/second/base limit
with its 30 s penalty of 429s. State layout (JSON, persisted with ``--data``)::

    bases:    {appId: {id, name, permissionLevel, tables: [tblId...], transactions}}
    tables:   {tblId: {id, name, description?, primaryFieldId, fields, views, base,
                       seq, records: {recId: {seq, createdTime, cells: {fldId: value}, modified: {fldId: iso}}}}}
    webhooks: {achId: {id, base, notificationUrl, specification, secret, expirationTime, payloads, ...}}

Run alone: ``python -m hub.sandbox.airtable --port 8701 --data ./.sandbox`` prints the exports.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from flask import Flask, Response, request

from hub.sandbox.airtable_fields import NOT_PRIMARY, AirtableError, build_field, choices
from hub.sandbox.airtable_hooks import HookOps
from hub.sandbox.airtable_records import RecordOps, not_found_model
from hub.sandbox.common import Faults, SlidingWindow, StandIn, new_id, serve

DEFAULT_TOKEN = "patHubSandbox0001.5a4e6462616e6b53616e64626f78546f6b656e466f72437268487562303030"
DEFAULT_BASE = "appHubSandbox0001"
RATE_LIMITED = "Rate limit exceeded. Please try again later"
RETRIABLE = "Server encountered an error while processing your request, and it is safe to retry the request"


def invalid(detail: str) -> AirtableError:
    return AirtableError(422, "INVALID_REQUEST_UNKNOWN", f"Invalid request: {detail}")


def not_unique() -> AirtableError:
    return AirtableError(422, "DUPLICATE_OR_EMPTY_FIELD_NAME", "Field names must be non-empty and unique")


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


def _error(exc: AirtableError) -> Response:
    if exc.type == "NOT_FOUND" and exc.status == 404:
        return _json({"error": "NOT_FOUND"}, 404)
    return _json({"error": {"type": exc.type, "message": exc.message}}, exc.status)


class AirtableStandIn(RecordOps, HookOps, StandIn):
    """Airtable on loopback. ``rate_limit`` requests per ``rate_window`` s per base, then 429 for
    every request to that base during ``penalty_seconds``."""

    name = "airtable"

    def __init__(
        self,
        *,
        tokens: list[str] | None = None,
        bases: dict[str, dict[str, Any]] | None = None,
        rate_limit: int = 5,
        rate_window: float = 1.0,
        penalty_seconds: float = 30.0,
        max_payloads: int = 10_000,
        data_dir: str | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.tokens = list(tokens or [DEFAULT_TOKEN])
        if not self.tokens or not all(isinstance(t, str) and t for t in self.tokens):
            raise ValueError(f"tokens must be non-empty strings, got {tokens!r}")
        self.seed_bases = dict(bases or {DEFAULT_BASE: {"name": "Hub sandbox"}})
        self.window = SlidingWindow(rate_limit, rate_window)
        self.penalty_seconds = penalty_seconds
        self.max_payloads = max_payloads
        self.user = {
            "id": "usrHubSandbox0001",
            "email": "sandbox@hub.invalid",
            "permissionLevel": "create",
            "name": "Hub sandbox",
        }
        self._penalties: dict[str, float] = {}
        self._iterators: dict[str, tuple[list[str], float]] = {}
        super().__init__(data_dir=data_dir, faults=faults)

    def initial_state(self) -> dict[str, Any]:
        bases = {
            base_id: {
                "id": base_id,
                "name": info.get("name", base_id),
                "permissionLevel": "create",
                "tables": [],
                "transactions": 0,
            }
            for base_id, info in self.seed_bases.items()
        }
        return {"bases": bases, "tables": {}, "webhooks": {}}

    def reset(self) -> None:
        with self.lock:
            self._penalties.clear()
            self._iterators.clear()
        super().reset()

    def add_base(self, base_id: str, name: str) -> None:
        """Make another base (Airtable has no sandbox-wide create-base without a workspace)."""
        with self.lock:
            self.state["bases"].setdefault(
                base_id, {"id": base_id, "name": name, "permissionLevel": "create", "tables": [], "transactions": 0}
            )
        self.changed()

    def error_response(self, status: int, message: str) -> Response:
        kinds = {
            401: "AUTHENTICATION_REQUIRED",
            403: "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND",
            404: "NOT_FOUND",
            422: "INVALID_REQUEST_UNKNOWN",
            429: "RATE_LIMIT_REACHED",
            503: "RETRIABLE_ERROR",
        }
        if status == 429:
            message = RATE_LIMITED
        elif status == 503:
            message = RETRIABLE
        return _error(AirtableError(status, kinds.get(status, "SERVER_ERROR"), message))

    # -- the gate: auth, then the per-base rate limit (before faults, as Airtable's edge would) -----
    def _gate(self) -> Response | None:
        if request.path.startswith("/_sandbox/"):
            return None
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or header[7:].strip() not in self.tokens:
            return _error(AirtableError(401, "AUTHENTICATION_REQUIRED", "Authentication required"))
        base_id = (request.view_args or {}).get("base_id")
        if not base_id:
            return None
        now = request.environ.get("sandbox.arrival", time.monotonic())
        with self.lock:
            if now < self._penalties.get(base_id, 0.0):
                return self.error_response(429, RATE_LIMITED)
            if self.window.hit(base_id, now) > 0:
                self._penalties[base_id] = now + self.penalty_seconds
                return self.error_response(429, RATE_LIMITED)
        return None

    def register(self, app: Flask) -> None:
        app.before_request_funcs.setdefault(None, []).insert(0, self._gate)
        inner = app.wsgi_app

        def stamped(environ: dict[str, Any], start_response: Any) -> Any:
            environ["sandbox.arrival"] = time.monotonic()  # the rate window counts arrivals
            return inner(environ, start_response)

        app.wsgi_app = stamped  # type: ignore[method-assign]

        @app.errorhandler(404)
        @app.errorhandler(405)
        def _missing(_: Exception) -> Response:
            return _json({"error": "NOT_FOUND"}, 404)

        def route(rule: str, methods: list[str], fn: Callable[..., Any], *, save: bool = False) -> None:
            def view(**kwargs: Any) -> Response:
                try:
                    with self.lock:
                        result = fn(**kwargs)
                except AirtableError as exc:
                    return _error(exc)
                if save:
                    self.changed()
                return _json(result)

            app.add_url_rule(rule, f"{fn.__name__}:{rule}:{methods}", view, methods=methods)

        route("/v0/meta/whoami", ["GET"], lambda: {"id": self.user["id"]})
        route(
            "/v0/meta/bases",
            ["GET"],
            lambda: {
                "bases": [
                    {"id": b["id"], "name": b["name"], "permissionLevel": b["permissionLevel"]}
                    for b in self.state["bases"].values()
                ]
            },
        )
        route("/v0/meta/bases/<base_id>/tables", ["GET"], self.schema)
        route(
            "/v0/meta/bases/<base_id>/tables", ["POST"], lambda base_id: self.create_table(base_id, _body()), save=True
        )
        route(
            "/v0/meta/bases/<base_id>/tables/<table>",
            ["PATCH"],
            lambda base_id, table: self.update_table(base_id, table, _body()),
            save=True,
        )
        route(
            "/v0/meta/bases/<base_id>/tables/<table>/fields",
            ["POST"],
            lambda base_id, table: self.create_field(base_id, table, _body()),
            save=True,
        )
        route(
            "/v0/meta/bases/<base_id>/tables/<table>/fields/<field_id>",
            ["PATCH"],
            lambda base_id, table, field_id: self.update_field(base_id, table, field_id, _body()),
            save=True,
        )

        route("/v0/<base_id>/<table>", ["GET"], lambda base_id, table: self.list_records(base_id, table, _query()))
        route(
            "/v0/<base_id>/<table>/listRecords",
            ["POST"],
            lambda base_id, table: self.list_records(base_id, table, _list_body()),
        )
        route(
            "/v0/<base_id>/<table>",
            ["POST", "PATCH", "PUT"],
            lambda base_id, table: self.write_records(base_id, table, request.method, _body()),
            save=True,
        )
        route(
            "/v0/<base_id>/<table>",
            ["DELETE"],
            lambda base_id, table: {
                "records": self.delete_records(
                    base_id, table, request.args.getlist("records[]") or request.args.getlist("records")
                )
            },
            save=True,
        )
        route("/v0/<base_id>/<table>/<record_id>", ["GET"], self.get_record)
        route(
            "/v0/<base_id>/<table>/<record_id>",
            ["PATCH", "PUT"],
            lambda base_id, table, record_id: self.write_records(base_id, table, request.method, _body(), record_id),
            save=True,
        )
        route(
            "/v0/<base_id>/<table>/<record_id>",
            ["DELETE"],
            lambda base_id, table, record_id: self.delete_records(base_id, table, [record_id])[0],
            save=True,
        )

        hooks = "/v0/bases/<base_id>/webhooks"
        route(hooks, ["GET"], self.list_hooks)
        route(hooks, ["POST"], lambda base_id: self.create_hook(base_id, _body()), save=True)
        route(f"{hooks}/<hook_id>", ["DELETE"], self.delete_hook, save=True)
        route(f"{hooks}/<hook_id>/refresh", ["POST"], self.refresh_hook, save=True)
        route(
            f"{hooks}/<hook_id>/enableNotifications",
            ["POST"],
            lambda base_id, hook_id: self.enable_hook(base_id, hook_id, _body()),
            save=True,
        )
        route(
            f"{hooks}/<hook_id>/payloads",
            ["GET"],
            lambda base_id, hook_id: self.list_payloads(
                base_id, hook_id, request.args.get("cursor"), request.args.get("limit")
            ),
            save=True,
        )

    def get_record(self, base_id: str, table: str, record_id: str) -> dict[str, Any]:
        t = self.table(base_id, table)
        if record_id not in t["records"]:
            raise AirtableError(404, "MODEL_ID_NOT_FOUND", "Record not found")
        by_id = request.args.get("returnFieldsByFieldId") in ("1", "true")
        return self.render(t, record_id, by_id=by_id)

    # -- meta API --------------------------------------------------------------------------------
    @staticmethod
    def table_schema(t: dict[str, Any], visible: bool = False) -> dict[str, Any]:
        keys = ("id", "name", "description", "primaryFieldId", "fields")
        out = {k: t[k] for k in keys if k in t}
        out["views"] = [
            dict(v, visibleFieldIds=[f["id"] for f in t["fields"]]) if visible else dict(v) for v in t["views"]
        ]
        return out

    def schema(self, base_id: str) -> dict[str, Any]:
        base = self.base(base_id)
        visible = "visibleFieldIds" in request.args.getlist("include")
        return {"tables": [self.table_schema(self.state["tables"][t], visible) for t in base["tables"]]}

    def _check_name(self, base_id: str, name: Any, exclude: str = "") -> str:
        if not isinstance(name, str) or not name.strip():
            raise invalid("a table needs a non-empty name")
        for tid in self.base(base_id)["tables"]:
            if tid != exclude and self.state["tables"][tid]["name"].lower() == name.strip().lower():
                raise AirtableError(422, "DUPLICATE_TABLE_NAME", f'A table named "{name}" already exists')
        return name.strip()

    def create_table(self, base_id: str, body: Any) -> dict[str, Any]:
        base = self.base(base_id)
        body = body if isinstance(body, dict) else {}
        name = self._check_name(base_id, body.get("name"))
        specs = body.get("fields")
        if not isinstance(specs, list) or not specs:
            raise invalid("a table needs at least one field")
        fields = [build_field(s, self.state["tables"].__contains__) for s in specs]
        lowered = [f["name"].lower() for f in fields]
        if len(set(lowered)) != len(lowered):
            raise not_unique()
        if fields[0]["type"] in NOT_PRIMARY:
            raise invalid(f"a {fields[0]['type']} field cannot be the primary field")
        table = {
            "id": new_id("tbl"),
            "name": name,
            "primaryFieldId": fields[0]["id"],
            "fields": fields,
            "views": [{"id": new_id("viw"), "name": "Grid view", "type": "grid"}],
            "base": base_id,
            "records": {},
            "seq": 0,
        }
        if isinstance(body.get("description"), str) and body["description"]:
            table["description"] = body["description"]
        self.state["tables"][table["id"]] = table
        base["tables"].append(table["id"])
        return self.table_schema(table)

    def update_table(self, base_id: str, table_key: str, body: Any) -> dict[str, Any]:
        t = self.table(base_id, table_key)
        body = body if isinstance(body, dict) else {}
        if "name" in body:
            t["name"] = self._check_name(base_id, body["name"], exclude=t["id"])
        if isinstance(body.get("description"), str):
            t["description"] = body["description"]
        return self.table_schema(t)

    def create_field(self, base_id: str, table_key: str, body: Any) -> dict[str, Any]:
        t = self.table(base_id, table_key)
        field = build_field(body, self.state["tables"].__contains__)
        if any(f["name"].lower() == field["name"].lower() for f in t["fields"]):
            raise not_unique()
        t["fields"].append(field)
        return field

    def update_field(self, base_id: str, table_key: str, field_id: str, body: Any) -> dict[str, Any]:
        t = self.table(base_id, table_key)
        field = next((f for f in t["fields"] if f["id"] == field_id), None)
        if field is None:
            raise not_found_model()
        body = body if isinstance(body, dict) else {}
        if "type" in body and body["type"] != field["type"]:
            raise invalid("a field's type cannot be changed")
        if "name" in body:
            name = body["name"]
            if (
                not isinstance(name, str)
                or not name.strip()
                or any(f is not field and f["name"].lower() == name.strip().lower() for f in t["fields"])
            ):
                raise not_unique()
            field["name"] = name.strip()
        if isinstance(body.get("description"), str):
            field["description"] = body["description"]
        if "options" in body:
            selects = ("singleSelect", "multipleSelects")
            if field["type"] not in selects or not isinstance(body["options"], dict):
                raise invalid(f"options of a {field['type']} field cannot be updated here")
            field["options"]["choices"] = choices(
                body["options"].get("choices"), field["name"], field["options"]["choices"]
            )
        return field


# -- request parsing ------------------------------------------------------------------------------
def _body() -> Any:
    return request.get_json(silent=True, force=True)


def _query() -> dict[str, Any]:
    """List parameters from a query string (``fields[]=``, ``sort[0][field]=``, ...)."""
    args = request.args
    names = ("pageSize", "maxRecords", "offset", "filterByFormula", "view", "cellFormat", "timeZone", "userLocale")
    q: dict[str, Any] = {k: args.get(k) for k in names}
    q["returnFieldsByFieldId"] = args.get("returnFieldsByFieldId") in ("1", "true", "True")
    if "fields[]" in args or "fields" in args:
        q["fields"] = args.getlist("fields[]") or args.getlist("fields")
    q["recordMetadata"] = args.getlist("recordMetadata[]")
    sort: dict[int, dict[str, str]] = {}
    for key, value in args.items(multi=True):
        if key.startswith("sort[") and key.endswith("]"):
            index, _, attr = key[5:-1].partition("][")
            if index.isdigit():
                sort.setdefault(int(index), {})[attr] = value
    q["sort"] = [sort[i] for i in sorted(sort)]
    return q


def _list_body() -> dict[str, Any]:
    body = _body()
    if not isinstance(body, dict):
        body = {}
    q = dict(body)
    q["recordMetadata"] = body.get("recordMetadata") or []
    if "fields" in body and not isinstance(body["fields"], list):
        raise invalid("fields must be a list")
    return q


def exports(url: str, standin: AirtableStandIn) -> dict[str, str]:
    """Settings that point the hub at this stand-in."""
    return {
        "AIRTABLE_ENDPOINT_URL": url,
        "AIRTABLE_API_KEY": standin.tokens[0],
        "AIRTABLE_BASE_ID": next(iter(standin.seed_bases)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the Airtable stand-in on loopback.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--data", default=None, help="directory to persist state in")
    parser.add_argument("--penalty", type=float, default=30.0, help="seconds of 429s after the rate limit")
    args = parser.parse_args(argv)
    handle = serve(AirtableStandIn(data_dir=args.data, penalty_seconds=args.penalty), args.port)
    for key, value in exports(handle.url, handle.standin).items():  # type: ignore[arg-type]
        print(f"export {key}={value}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        handle.stop()


if __name__ == "__main__":
    main()
