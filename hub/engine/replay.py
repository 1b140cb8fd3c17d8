"""``hub replay``: what a changed config would have done with the recent events, acting on nothing.

The worker keeps a capped list of recent record events (entity, record key, kind, changed field
names — no field values). Replay reads each record as it is now, evaluates the old and the new
config's rules against it, and reports where the decisions or planned actions differ.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import redis

from hub import fastjson, scripts
from hub.config.loader import Config
from hub.engine import evaluate
from hub.engine.entities import key_hash
from hub.engine.evaluate import RecordEvent
from hub.errors import ExpressionError
from hub.mapping.values import to_json

RECENT = "hub:events:recent"
CAP = 10000


def remember(conn: redis.Redis, events: list[dict[str, Any]], at: datetime) -> None:
    if not events:
        return
    stamp = to_json(at)
    entries = [
        fastjson.dumps(
            {
                "at": stamp,
                "entity": ev["entity"],
                "key": ev.get("key"),
                "kind": ev["kind"],
                "changed": sorted(ev.get("changes") or {}),
                "occurrence": ev.get("occurrence"),
            }
        )
        for ev in events
    ]
    # One push (newest at the head, as one push each would leave them), then the cap.
    scripts.pipeline(conn, [("LPUSH", RECENT, *entries), ("LTRIM", RECENT, 0, CAP - 1)])


def recent(conn: redis.Redis, since: datetime) -> list[dict[str, Any]]:
    out = []
    for raw in conn.lrange(RECENT, 0, CAP - 1):
        entry = fastjson.loads(raw)
        if entry["at"] < to_json(since):
            break
        out.append(entry)
    out.reverse()
    return out


def _decisions(cfg: Config, entry: dict[str, Any], record: dict[str, Any] | None) -> dict[str, Any]:
    changes = {f: (None, (record or {}).get(f)) for f in entry["changed"]}
    ev = RecordEvent(entry["kind"], entry["entity"], entry.get("key") or "", changes, entry.get("occurrence") or "")
    out: dict[str, Any] = {}
    for rule in cfg.rules.values():
        if not rule.model.enabled or not evaluate.trigger_matches(rule, ev):
            continue
        if rule.model.wait is not None:
            out[rule.id] = {"decision": "would wait", "wait": str(rule.model.wait)}
            continue
        ctx = evaluate.context(rule, record, {"kind": ev.kind}, entry["changed"], cfg.rules_file.templates)
        try:
            if not evaluate.condition(rule, ctx):
                out[rule.id] = {"decision": "skip", "reason": "condition is false"}
                continue
            out[rule.id] = {"decision": "fire", "actions": [a.as_json() for a in evaluate.plan(rule, ctx)]}
        except ExpressionError as exc:
            out[rule.id] = {"decision": "error", "error": str(exc)}
    return out


def replay(current: Config, candidate: Config, entries: list[dict[str, Any]], load_record: Any) -> list[dict[str, Any]]:
    """For each event, the decisions of both configs where they differ. ``load_record(entity, key)``
    returns the record as it is now (or None)."""
    report = []
    for entry in entries:
        record = load_record(entry["entity"], entry.get("key")) if entry["kind"] != "deleted" else None
        before = _decisions(current, entry, record) if entry["entity"] in current.mappings else {}
        after = _decisions(candidate, entry, record) if entry["entity"] in candidate.mappings else {}
        diff = {
            rid: {"now": before.get(rid), "with_new_config": after.get(rid)}
            for rid in sorted(set(before) | set(after))
            if before.get(rid) != after.get(rid)
        }
        report.append(
            {
                "at": entry["at"],
                "entity": entry["entity"],
                "record": key_hash(entry["key"]) if entry.get("key") else None,
                "kind": entry["kind"],
                "changed": entry["changed"],
                "differences": diff,
            }
        )
    return report
