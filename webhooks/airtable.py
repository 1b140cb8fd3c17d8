"""Airtable webhooks (``POST /webhooks/airtable``): a MAC-signed ping → one fetch job.

Airtable's ping carries no record data, only ``{"base": {"id"}, "webhook": {"id"}, "timestamp"}``
signed with ``X-Airtable-Content-MAC: hmac-sha256=<hex>`` keyed by the webhook's base64-decoded
``macSecretBase64``. The body names the webhook, so it is parsed first (untrusted) only to find
which stored secret to check; nothing from it is used before the MAC over the raw bytes matches.
The request path then enqueues :func:`fetch_payloads` — no Airtable call — and answers 204 with
an empty body, as Airtable asks. A redelivered ping (same webhook and timestamp) is dropped.

Webhooks the hub creates expire after 7 days; :func:`refresh_webhooks` (cron) extends them.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, request

from connectors.airtable_webhooks import verify_ping
from hub import clock, jobs
from hub.errors import HubError, TransientError
from hub.jobs import hub_job
from hub.runtime import Runtime
from webhooks import airtable_cursor as state
from webhooks.intake import Reject, accept, body, conn, dedupe_key, guarded, parse_json, require_content_type

log = logging.getLogger("hub.webhooks.airtable")

bp = Blueprint("airtable_webhooks", __name__)

PATH = "/webhooks/airtable"
MAC = "X-Airtable-Content-MAC"
REFRESH_WITHIN = timedelta(days=2)  # refresh a webhook once it has less than this left (of 7 days)


# -- the endpoint -------------------------------------------------------------------------------
def _ident(ping: Any, name: str) -> str:
    value = ping.get(name) if isinstance(ping, dict) else None
    ident = value.get("id") if isinstance(value, dict) else None
    if not isinstance(ident, str) or not ident:
        raise Reject(400, f"not an Airtable ping: {name}.id must be a non-empty string")
    return ident


def parse_ping(ping: Any) -> tuple[str, str, str]:
    """(base id, webhook id, timestamp) of a ping body, or a 400 naming what is wrong."""
    if not isinstance(ping, dict):
        raise Reject(400, f"not an Airtable ping: expected a JSON object, got {type(ping).__name__}")
    base_id, webhook_id = _ident(ping, "base"), _ident(ping, "webhook")
    stamp = ping.get("timestamp")
    if not isinstance(stamp, str) or not stamp:
        raise Reject(400, "not an Airtable ping: timestamp must be a non-empty string")
    return base_id, webhook_id, stamp


@bp.post(PATH)
@guarded
def receive() -> Response:
    """Verify a ping and enqueue the fetch of its webhook's payloads."""
    raw = body()
    require_content_type("application/json")
    base_id, webhook_id, stamp = parse_ping(parse_json(raw))
    header = request.headers.get(MAC)
    if not header:
        raise Reject(401, f"missing {MAC} header")
    secret, known_base = state.secret_of(conn(), webhook_id)
    if secret is None:
        raise Reject(401, f"unknown webhook {webhook_id[:40]!r}: not created by `hub webhooks setup` here")
    try:
        verify_ping(raw, header, secret)
    except ValueError:
        raise Reject(401, f"bad {MAC}: the body was not signed with this webhook's secret") from None
    if known_base != base_id:
        raise Reject(401, f"webhook {webhook_id[:40]!r} belongs to another base")
    ping = {"webhook": webhook_id, "timestamp": stamp}
    accept(base_id, [ping], [dedupe_key("airtable", [webhook_id, stamp])], job=state.FETCH_JOB)
    return Response(status=204)


# -- the jobs -----------------------------------------------------------------------------------
@hub_job
def fetch_payloads(base_id: str, webhook_id: str | list[dict[str, Any]]) -> dict[str, int]:
    """Turn the webhook's new payloads into source events (see :mod:`webhooks.airtable_cursor`).

    ``webhook_id`` is an id, or the pings :func:`webhooks.intake.accept` passes on (a list of
    ``{"webhook", "timestamp"}``) when the job comes from the endpoint.
    """
    rt = Runtime.current()
    ids = [webhook_id] if isinstance(webhook_id, str) else sorted({str(p["webhook"]) for p in webhook_id})
    counts: dict[str, int] = {}
    for wid in ids:
        hook = state.load_hook(rt.redis, wid)
        if hook is None or hook.base != base_id:
            log.warning("airtable webhook %s of base %s is not registered (any more): ping ignored", wid, base_id)
            counts["unknown"] = counts.get("unknown", 0) + 1
            continue
        for k, v in state.drain(rt.redis, rt.connector("airtable"), rt.config, hook).items():
            counts[k] = counts.get(k, 0) + v
    return counts


@hub_job
def refresh_webhooks(within_hours: float | None = None) -> dict[str, Any]:
    """Extend every hub webhook that expires within ``within_hours`` (default 48) by 7 days, and
    re-enqueue fetches a dead worker left pending. Permanent failures are reported (run
    ``hub webhooks setup``); transient ones make the job retry."""
    rt = Runtime.current()
    r = rt.redis
    window = timedelta(hours=within_hours) if within_hours is not None else REFRESH_WITHIN
    now = clock.now()
    report: dict[str, Any] = {"refreshed": [], "kept": 0, "failed": {}, "resumed": []}
    transient = []
    for wid in state.hook_ids(r):
        hook = state.load_hook(r, wid)
        if hook is None:
            continue
        if state.stranded(r, wid):
            jobs.enqueue(r, state.FETCH_JOB, hook.base, wid, queue_name=jobs.QUEUE_HIGH)
            report["resumed"].append(wid)
        if not hook.expires or clock.parse_instant(hook.expires) - now > window:
            report["kept"] += 1
            continue
        try:
            state.set_expiration(r, wid, rt.connector("airtable").refresh_webhook(hook.base, wid))
        except TransientError as exc:
            transient.append(wid)
            report["failed"][wid] = str(exc)
            continue
        except HubError as exc:
            log.error("airtable webhook %s (base %s) could not be refreshed: %s; run `hub webhooks setup`",
                      wid, hook.base, exc)  # fmt: skip
            report["failed"][wid] = str(exc)
            continue
        report["refreshed"].append(wid)
    if transient:
        raise TransientError(f"{len(transient)} Airtable webhook(s) not refreshed yet: {', '.join(transient)}")
    return report


# -- set-up -------------------------------------------------------------------------------------
def _scope(hook: dict[str, Any]) -> tuple[str | None, list[str]]:
    filters = ((hook.get("specification") or {}).get("options") or {}).get("filters") or {}
    return filters.get("recordChangeScope"), list(filters.get("dataTypes") or [])


def _ensure(rt: Runtime, base: str, table_id: str, target: str, existing: list[dict[str, Any]]) -> dict[str, Any]:
    """One usable webhook on ``table_id`` pointing at ``target``: reuse (and refresh) one whose
    secret the hub holds, delete the ones it cannot verify, create one if none is left."""
    r, connector = rt.redis, rt.connector("airtable")
    kept: str | None = None
    removed = 0
    for hook in existing:
        scope, kinds = _scope(hook)
        if hook.get("notificationUrl") != target or scope != table_id or "tableData" not in kinds:
            continue
        known = state.load_hook(r, hook["id"])
        if known is not None and hook.get("isHookEnabled", True) and kept is None:
            kept = hook["id"]
            continue
        if known is not None:  # expired: read what it still holds (Airtable keeps it a week) before it goes
            try:
                state.drain(r, connector, rt.config, known)
            except HubError as exc:
                log.warning("airtable webhook %s: its last payloads could not be read: %s", hook["id"], exc)
            log.warning("airtable webhook %s had expired: changes since then were not seen; run a backfill",
                        hook["id"])  # fmt: skip
        connector.delete_webhook(base, hook["id"])
        state.forget_hook(r, hook["id"])
        removed += 1
    if kept is not None:
        state.set_expiration(r, kept, connector.refresh_webhook(base, kept))
        return {"webhook": kept, "created": False, "removed": removed}
    made = connector.create_webhook(base, target, table=table_id, include_previous=False)
    state.save_hook(r, made["id"], base=base, table=table_id, url=target, secret=made["macSecretBase64"],
                    expires=made.get("expirationTime"))  # fmt: skip
    return {"webhook": made["id"], "created": True, "removed": removed}


def setup(rt: Runtime, public_url: str) -> dict[str, Any]:
    """Give every mapped Airtable table a webhook to ``{public_url}/webhooks/airtable``
    (idempotent) and keep its MAC secret and cursor in Redis; returns what was done per table."""
    target = public_url.rstrip("/") + PATH
    report: dict[str, Any] = {"target": target, "bases": {}, "forgotten": []}
    for base, tables in state.mapped_tables(rt.config).items():
        entry: dict[str, Any] = report["bases"].setdefault(base, {})
        try:
            schema = state.base_schema(rt.redis, rt.connector("airtable"), base, fresh=True)
            existing = rt.connector("airtable").list_webhooks(base)
        except HubError as exc:
            entry["error"] = str(exc)
            continue
        report["forgotten"] += _forget_vanished(rt, base, target, {h["id"] for h in existing})
        done: dict[str, dict[str, Any]] = {}  # one table named twice (by name and by id): one webhook
        for table in tables:
            table_id = table if table in schema else next((i for i, t in schema.items() if t["name"] == table), None)
            if table_id is None:
                entry[table] = {"error": f"base {base} has no table {table!r} (run `hub provision` first?)"}
                continue
            if table_id not in done:
                try:
                    done[table_id] = _ensure(rt, base, table_id, target, existing)
                except HubError as exc:
                    done[table_id] = {"error": str(exc)}
            entry[table] = done[table_id]
    return report


def _forget_vanished(rt: Runtime, base: str, target: str, live: set[str]) -> list[str]:
    """Drop the hub's records of webhooks Airtable no longer has (deleted by hand, or long expired)."""
    gone = []
    for wid in state.hook_ids(rt.redis):
        hook = state.load_hook(rt.redis, wid)
        if hook is not None and hook.base == base and hook.url == target and wid not in live:
            state.forget_hook(rt.redis, wid)
            gone.append(wid)
    return gone
