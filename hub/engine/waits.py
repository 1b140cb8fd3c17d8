"""Durable waits: "72 h after the lead, if still no upload".

A wait is a Redis sorted-set entry scored by its due time on the hub clock, with its payload
beside it — no sleeping process, no length limit (400 days is fine), persisted with Redis (AOF).
``release_due`` (run by rq cron every minute and when a worker starts) turns due waits into jobs
with a deterministic id, so a wait that came due while everything was down fires once on
recovery, and a release run twice enqueues it once. When the wait ends the rule's condition is
evaluated against the record as it is then, read fresh from its systems. Deleting the record
cancels its waits.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import redis

from hub import clock, jobs
from hub.config.loader import CompiledRule
from hub.engine import history
from hub.engine.entities import key_hash
from hub.jobs import hub_job
from hub.mapping.values import to_json
from hub.runtime import Runtime

log = logging.getLogger("hub.waits")
DUE = "hub:waits"
PAYLOAD = "hub:wait:"
BY_RECORD = "hub:waits:rec:"
WAIT_JOB = "hub.engine.waits.wait_due"

_RELEASE_BATCH = 500


def wait_id(rule_id: str, occurrence: str) -> str:
    return "w" + hashlib.sha256(f"{rule_id}\x1f{occurrence}".encode()).hexdigest()[:24]


def schedule(rt: Runtime, rule: CompiledRule, ev_json: dict[str, Any], record: dict[str, Any] | None) -> str:
    """Record a wait for ``rule`` after the event; idempotent per (rule, occurrence)."""
    assert rule.model.wait is not None
    occurrence = ev_json["occurrence"]
    wid = wait_id(rule.id, occurrence)
    due = clock.now() + rule.model.wait
    entity, key = ev_json.get("entity"), ev_json.get("key")
    payload = {
        "rule": rule.id,
        "entity": entity,
        "key": key,
        "occurrence": occurrence,
        "event": ev_json.get("event")
        or {"kind": ev_json.get("kind"), "changes": ev_json.get("changes") or {}, "system": ev_json.get("system")},
        "due": to_json(due),
        "scheduled_at": to_json(clock.now()),
        "values": ev_json.get("values") if not key else {},
    }
    with rt.redis.pipeline(transaction=True) as pipe:
        pipe.set(PAYLOAD + wid, json.dumps(payload), nx=True)
        pipe.zadd(DUE, {wid: due.timestamp()}, nx=True)
        if entity and key:
            pipe.sadd(f"{BY_RECORD}{entity}:{key_hash(key)}", wid)
        _, added, *_ = pipe.execute()
    if not added:
        return "already scheduled"
    history.record(
        rt.redis,
        {
            "at": to_json(clock.now()),
            "rule": rule.id,
            "entity": entity,
            "record": key_hash(key) if key else None,
            "decision": "scheduled",
            "reason": f"wait until {to_json(due)}",
            "occurrence": key_hash(occurrence),
        },
    )
    return "scheduled"


def cancel_for_record(conn: redis.Redis, entity: str, key: str) -> int:
    members = [m.decode() for m in conn.smembers(f"{BY_RECORD}{entity}:{key_hash(key)}")]
    if not members:
        return 0
    with conn.pipeline(transaction=True) as pipe:
        pipe.zrem(DUE, *members)
        pipe.delete(*[PAYLOAD + m for m in members])
        pipe.delete(f"{BY_RECORD}{entity}:{key_hash(key)}")
        pipe.execute()
    for m in members:
        history.record(
            conn,
            {
                "at": to_json(clock.now()),
                "rule": "-",
                "entity": entity,
                "record": key_hash(key),
                "decision": "cancelled",
                "reason": "record deleted",
                "occurrence": m,
            },
        )
    return len(members)


def pending(conn: redis.Redis, limit: int = 100) -> list[dict[str, Any]]:
    out = []
    for wid in conn.zrange(DUE, 0, limit - 1):
        raw = conn.get(PAYLOAD + wid.decode())
        if raw:
            entry = json.loads(raw)
            out.append(
                {
                    "id": wid.decode(),
                    "rule": entry["rule"],
                    "entity": entry["entity"],
                    "due": entry["due"],
                    "record": key_hash(entry["key"]) if entry.get("key") else None,
                }
            )
    return out


@hub_job
def release_due() -> int:
    """Enqueue every wait due on the hub clock (each once)."""
    rt = Runtime.current()
    return release(rt.redis)


def release(conn: redis.Redis) -> int:
    now = clock.now().timestamp()
    released = 0
    while True:
        due = [w.decode() for w in conn.zrangebyscore(DUE, "-inf", now, start=0, num=_RELEASE_BATCH)]
        if not due:
            return released
        for wid in due:
            jobs.enqueue(conn, WAIT_JOB, wid, job_id=f"wait-{wid}", unique=True)
            conn.zrem(DUE, wid)  # after the enqueue: a crash in between re-enqueues, and `unique` dedupes
            released += 1


@hub_job
def wait_due(wid: str) -> str:
    from hub.engine.record import assemble
    from hub.engine.rules import fire

    rt = Runtime.current()
    raw = rt.redis.get(PAYLOAD + wid)
    if raw is None:
        return "cancelled"
    payload = json.loads(raw)
    rule = rt.config.rules.get(payload["rule"])
    if rule is None or not rule.model.enabled:
        rt.redis.delete(PAYLOAD + wid)
        return "rule removed or disabled"
    entity, key = payload.get("entity"), payload.get("key")
    record = None
    if entity and key:
        from hub.engine.state import RecordState

        if not RecordState(rt.redis).ids(entity, key):
            rt.redis.delete(PAYLOAD + wid)
            return "record no longer exists"
        record = assemble(rt, entity, key, {}, None, fresh=True)
    elif entity:
        record = assemble(rt, entity, None, payload.get("values") or {}, None)
    outcome = fire(rt, rule, record, payload["event"], payload["occurrence"] + ":wait", entity=entity, key=key)
    with rt.redis.pipeline(transaction=True) as pipe:
        pipe.delete(PAYLOAD + wid)
        if entity and key:
            pipe.srem(f"{BY_RECORD}{entity}:{key_hash(key)}", wid)
        pipe.execute()
    return outcome
