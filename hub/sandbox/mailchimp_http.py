"""HTTP helpers the Mailchimp stand-in's route modules share: JSON and problem+json responses,
request body parsing, paging and projection arguments."""

from __future__ import annotations

import json
import uuid
from typing import Any

import orjson
from flask import Response, request

from hub.sandbox.mailchimp_model import ERROR_TYPE, MAX_COUNT, Problem, invalid


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, content_type="application/json; charset=utf-8")


def no_content() -> Response:
    """Mailchimp's 204: an empty body with a JSON content type (the SDK returns the raw response)."""
    return Response(b"", status=204, content_type="application/json; charset=utf-8")


def problem_response(exc: Problem) -> Response:
    body: dict[str, Any] = {
        "type": ERROR_TYPE,
        "title": exc.title,
        "status": exc.status,
        "detail": exc.detail,
        "instance": str(uuid.uuid4()),
    }
    if exc.errors is not None:
        body["errors"] = exc.errors
    return Response(json.dumps(body), status=exc.status, content_type="application/problem+json; charset=utf-8")


def json_body() -> dict[str, Any]:
    raw = request.get_data(cache=True)
    try:
        body = orjson.loads(raw or b"{}")
    except ValueError:
        raise Problem(400, "JSON Parse Error", "We encountered an unspecified JSON parsing error.") from None
    if not isinstance(body, dict):
        raise invalid(errors=[{"field": "", "message": "The request body must be a JSON object."}])
    return body


def page_args(default: int = 10) -> tuple[int, int]:
    """``count`` (≤ 1000, default 10) and ``offset`` from the query string."""
    try:
        count = int(request.args.get("count", default))
        offset = int(request.args.get("offset", 0))
    except ValueError:
        raise Problem(400, "Bad Request", "count and offset must be integers.") from None
    if not 0 <= count <= MAX_COUNT or offset < 0:
        raise Problem(
            400,
            "Bad Request",
            f"count must be between 0 and {MAX_COUNT} and offset ≥ 0, got count={count} offset={offset}.",
        )
    return count, offset


def bool_arg(name: str) -> bool:
    return request.args.get(name, "").lower() in ("1", "true", "yes")


def projected(body: dict[str, Any]) -> dict[str, Any]:
    return project(body, request.args.get("fields"), request.args.get("exclude_fields"))


# -- fields / exclude_fields ------------------------------------------------------------------
def _tree(paths: str) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in paths.split(","):
        node = tree
        for part in [p for p in path.strip().split(".") if p]:
            node = node.setdefault(part, {})
    return tree


def _pick(value: Any, tree: dict[str, Any]) -> Any:
    if not tree:
        return value
    if isinstance(value, list):
        return [_pick(v, tree) for v in value]
    if isinstance(value, dict):
        return {k: _pick(value[k], sub) for k, sub in tree.items() if k in value}
    return value


def _drop(value: Any, tree: dict[str, Any]) -> Any:
    if isinstance(value, list):
        return [_drop(v, tree) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for k, v in value.items():
        if k in tree:
            if not tree[k]:
                continue
            v = _drop(v, tree[k])
        out[k] = v
    return out


def project(doc: dict[str, Any], fields: str | None, exclude: str | None) -> dict[str, Any]:
    """Apply Mailchimp's ``fields``/``exclude_fields`` (comma-separated, dot notation)."""
    if fields:
        doc = _pick(doc, _tree(fields))
    if exclude:
        doc = _drop(doc, _tree(exclude))
    return doc
