"""Sync: turn what systems report into agreed changes, and push those changes to the others.

``ingest`` reads every reported record fresh from its system of record (webhooks can be stale,
duplicated or out of order), translates it to the canonical entity and applies it to the record's
state (ownership and time decide), under a per-record lock. Changes land in the job's outbox;
``drain`` turns the outbox into propagation jobs (one per target system, batched) and one rules
job — in the same transaction that empties it. The intake's own drain runs that propagation and
those rules in place instead (see :func:`follow_up`).

The hub's own writes come back as webhooks; their values equal the agreed fingerprints, so they
are no change at all: that is what keeps two-way sync from ping-ponging.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from rq import get_current_job

from hub import clock, fastjson, ids, jobs, scripts
from hub.config.loader import Config
from hub.config.mapping import Mapping
from hub.config.rules import ChangedTrigger
from hub.engine.derived import computed_inputs, computed_names, inline_computable, own_computed_names, parents_of
from hub.engine.entities import EntityIndex, Place, collection_id, record_key
from hub.engine.record import with_computed
from hub.engine.state import FieldObs, RecordState
from hub.mapping.translate import complete, from_system
from hub.mapping.values import to_json
from hub.runtime import Runtime

log = logging.getLogger("hub.sync")

PROPAGATE_JOB = "hub.engine.propagate.propagate"
RULES_JOB = "hub.engine.rules.run_events"
RECOMPUTE_JOB = "hub.engine.compute.recompute"


@dataclass
class SourceEvent:
    """A normalised "record X changed in system S" from any intake."""

    system: str
    coll: str
    id: str
    kind: str = "unknown"  # created | updated | deleted | unknown
    base: str = ""
    at_ms: int = 0
    fields: list[str] = field(default_factory=list)  # system fields the event says changed (hint)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> SourceEvent:
        return cls(
            system=str(raw["system"]),
            coll=str(raw["coll"]),
            id=str(raw["id"]),
            kind=str(raw.get("kind") or "unknown"),
            base=str(raw.get("base") or ""),
            at_ms=int(raw.get("at_ms") or 0),
            fields=[str(f) for f in raw.get("fields") or []],
        )


def tracked_fields(cfg: Config, entity: str) -> set[str]:
    """Fields whose previous value rules ask about (``changed`` triggers with ``from``)."""
    out = set()
    for rule in cfg.rules.values():
        w = rule.model.when
        if isinstance(w, ChangedTrigger) and w.changed == entity:
            out.add(w.field)
    return out


def field_modes(mapping: Mapping, system: str) -> dict[str, str]:
    """How ``system``'s value of each field counts: ``own``, ``shared`` or ``deny:<owner>``
    (looked up per record and field on the sync path: built once per mapping and system). A
    field the mapping does not declare has no owner: ``shared``."""
    per_system: dict[str, dict[str, str]] = mapping.memo("_memo_field_modes", dict)
    modes = per_system.get(system)
    if modes is None:
        owners = {name: mapping.owner_of(name) for name in mapping.all_fields()}
        modes = {n: "shared" if o is None else "own" if o == system else f"deny:{o}" for n, o in owners.items()}
        per_system[system] = modes
    return modes


def outbox_name() -> str:
    job = get_current_job()
    if job is not None:
        return f"hub:outbox:{job.id}"
    return f"hub:outbox:local:{ids.new_id()}"


def ingest(rt: Runtime, raw_events: list[dict[str, Any]], *, run_rules: bool = True) -> dict[str, int]:
    """Apply a batch of source events; returns counts (for the job result and benchmarks)."""
    cfg = rt.config
    index = EntityIndex(cfg)
    state = RecordState(rt.redis)
    outbox = outbox_name()
    # A retried job first drains what a killed attempt recorded: its own changes, then those of its
    # in-place follow-ups (each read costs one round trip, and finds nothing on a first attempt).
    counts = drain(rt, outbox, run_rules=run_rules)
    for k, v in drain(rt, follow_ups_outbox(outbox)).items():
        counts[k] += v
    groups: dict[Place, dict[str, SourceEvent]] = defaultdict(dict)
    for raw in raw_events:
        ev = SourceEvent.from_json(raw)
        place = index.find(ev.system, ev.coll, ev.base)
        if place is None:
            counts["unmapped"] += 1
            continue
        prev = groups[place].get(ev.id)
        if prev is not None:  # several events for one record in a batch: one fresh read is enough
            ev.fields = sorted(set(prev.fields) | set(ev.fields))
            ev.at_ms = max(prev.at_ms, ev.at_ms)
            if prev.kind == "created" and ev.kind != "deleted":
                ev.kind = "created"
        groups[place][ev.id] = ev
    logged: list[dict[str, Any]] | None = []
    names = [f"{collection_id(place.system, place.coll)}:{i}" for place, evs in groups.items() for i in evs]
    # The records stay locked until their changes are written everywhere (propagated in place): a
    # later change of the same record, ingested by another worker, is written after this one.
    with ExitStack() as held:
        held.enter_context(state.locked(names))
        for place, evs in groups.items():
            if _ingest_place(rt, cfg, state, place, list(evs.values()), outbox, counts, logged):
                logged = None  # a deletion was logged in Redis only: the drain reads the outbox back
        drained = drain(rt, outbox, run_rules=run_rules, entries=logged, in_place=True, propagated=held.close)
    for k, v in drained.items():
        counts[k] += v
    return dict(counts)


def _ingest_place(
    rt: Runtime,
    cfg: Config,
    state: RecordState,
    place: Place,
    evs: list[SourceEvent],
    outbox: str,
    counts: dict[str, int],
    logged: list[dict[str, Any]] | None,
) -> bool:
    """Read the records fresh and apply them (their locks held by the caller); True if a deletion
    went to the outbox (not to ``logged``)."""
    mapping = cfg.mappings[place.entity]
    deleted = False
    connector = rt.connector(place.system)
    coll_id = collection_id(place.system, place.coll)
    tracked = tracked_fields(cfg, place.entity)
    modes = field_modes(mapping, place.system)
    live = {r.id: r for r in connector.get_many(place.coll, [e.id for e in evs])}
    calls: list[dict[str, Any]] = []  # applied in one round trip below
    for ev in evs:
        rec = live.get(ev.id)
        item = {"entity": place.entity, "system": place.system, "id": ev.id, "kind": ev.kind, "hint": ev.fields}
        if rec is None:
            if state.delete(place.entity, place.system, coll_id, ev.id, outbox=outbox, item=item):
                counts["deleted"] += 1
                deleted = True
            else:
                counts["missing"] += 1
            continue
        decoded = from_system(mapping, place.system, rec)
        for problem in decoded.problems:
            log.warning("%s %s: %s", place.entity, place.system, problem)  # names the field, not the value
        values = decoded.values
        key = record_key(mapping, values, place.system, rec.id)
        source_ms = _source_ms(rec.updated_at, ev.at_ms)
        # Observed as JSON (a value's fingerprint is its JSON's): dates are written as text once.
        shown = to_json(values)
        obs = [FieldObs(n, v, modes.get(n, "shared"), n in tracked) for n, v in shown.items()]
        inline = _inline_computed(mapping, values)
        if inline:
            # The read brought every input of the record's computed fields: they are computed now and
            # applied in the same call, as the hub's own values (one event for the rules), instead of
            # a recompute job reading every system. `computed` tells the drain and the rules.
            inline_shown = to_json(inline)
            obs += [FieldObs(n, v, "hub", n in tracked) for n, v in inline_shown.items()]
            shown.update(inline_shown)
            item["computed"] = list(inline)
        item.update(key=key, values=shown, at_ms=source_ms)
        calls.append(
            {
                "entity": place.entity,
                "key": key,
                "system": place.system,
                "coll_id": coll_id,
                "record_id": rec.id,
                "source_ms": source_ms,
                "fields": obs,
                "outbox": outbox,
                "item": item,
            }
        )
    for call, applied in zip(calls, state.apply_many(calls, logged=logged), strict=True):
        computed = call["item"].get("computed") or ()
        reported = [c for c in applied.changed if c[0] not in computed]
        counts["changed" if reported else "unchanged"] += 1
        counts["conflicts"] += len(applied.conflicts)
    return deleted


def hub_call(
    entity: str,
    key: str,
    values: dict[str, Any],
    *,
    kind: str,
    at_ms: int,
    tracked: set[str],
    outbox: str,
    rule: str | None = None,
    done: str = "",
) -> dict[str, Any]:
    """The :meth:`RecordState.apply` call for values the hub itself decided (a rule's write, computed
    fields): owned by the hub, then pushed to every system that maps them. ``done``: the marker of
    the rule action making the write."""
    item = {
        "entity": entity,
        "system": "hub",
        "id": "",
        "kind": kind,
        "key": key,
        "values": to_json(values),
        "at_ms": at_ms,
    }
    if rule is not None:
        item["rule"] = rule
    return {
        "entity": entity,
        "key": key,
        "system": "hub",
        "coll_id": "",
        "record_id": "",
        "source_ms": at_ms,
        "fields": [FieldObs(n, v, "own", n in tracked) for n, v in values.items()],
        "outbox": outbox,
        "item": item,
        "done": done,
    }


def _inline_computed(mapping: Mapping, values: dict[str, Any]) -> dict[str, Any] | None:
    """The record's own computed values when ``values`` hold all their inputs (else None)."""
    if not inline_computable(mapping) or not computed_inputs(mapping) <= values.keys():
        return None
    record = with_computed(None, mapping, complete(mapping, values))
    return {n: record.get(n) for n in own_computed_names(mapping)}


def _source_ms(updated_at: datetime | None, at_ms: int) -> int:
    if updated_at is not None:
        return int(updated_at.astimezone(UTC).timestamp() * 1000)
    if at_ms:
        return at_ms
    return int(clock.now().timestamp() * 1000)


def drain(
    rt: Runtime,
    outbox: str,
    *,
    run_rules: bool = True,
    entries: list[dict[str, Any]] | None = None,
    in_place: bool = False,
    propagated: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Enqueue what the outbox records (propagation per target, one rules job) and empty it, atomically.

    ``entries``: the outbox's content as the running job logged it (see ``apply_many``), when
    only that job wrote to it; otherwise it is read from Redis (so a job drains first what a
    killed attempt of it left there).

    ``in_place``: run that propagation and those rules in this job first (see :func:`follow_up`);
    only those that fail are enqueued. The outbox stays until then, so a job killed meanwhile
    runs them again when retried (both are idempotent). ``propagated`` is called between the two
    (the caller's record locks, held while the changes are written)."""
    counts: dict[str, int] = defaultdict(int)
    if entries is None:
        entries = RecordState(rt.redis).outbox(outbox)
    if not entries:
        return counts  # nothing was pushed: there is no outbox to delete
    cfg = rt.config
    pushes: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    recompute: dict[str, set[str]] = defaultdict(set)
    record_events: list[dict[str, Any]] = []
    conflicts: list[dict[str, Any]] = []
    repairs: list[dict[str, Any]] = []
    for entry in entries:
        item, result = entry["item"], entry["result"]
        entity = item.get("entity")
        mapping = cfg.mappings.get(entity) if entity else None
        if mapping is None:
            continue
        if result.get("deleted"):
            record_events.append(_record_event(item, result, "deleted", {}))
            continue
        values = item.get("values") or {}
        changed = {
            name: (fastjson.loads(old) if old else None, bool(had)) for name, old, had in result.get("changed") or []
        }
        computed = item.get("computed") or ()  # the hub's values: they go to the reporting system too
        kind = _kind(item, result)
        if kind == "updated" and result.get("created") and item.get("hint"):
            hinted = _hinted(mapping, item["system"], item["hint"])
            changed = {n: v for n, v in changed.items() if n in hinted or n in computed}
        refused = result.get("conflicts") or []
        refused_names = {name for name, _ in refused}
        # Computed values go to the reporting system too: when they changed, and where it was edited
        # against them (its copy is put back with the value computed from its own read).
        ours = [n for n in computed if n in changed or n in refused_names]
        for target, _ in mapping.systems.items():
            own = target == item["system"]
            target_fields = getattr(mapping.systems, target).fields
            send = {
                n: values.get(n)
                for n in (ours if own else changed)
                if n in target_fields and not target_fields[n].readonly
            }
            if send or (result.get("created") and not own):
                pushes[(entity, target)].append({"key": item["key"], "values": send, "source": item["system"]})
        for name, reason in refused:
            conflict = {
                "entity": entity,
                "key": item["key"],
                "field": name,
                "reason": reason,
                "system": item["system"],
                "at": to_json(clock.now()),
            }
            conflicts.append(conflict)
            if name not in ours:  # put back by the push above
                repairs.append(conflict)
        if item.get("kind") == "link":
            continue  # a cross-system id learned by the hub: bookkeeping, not a business change
        if changed and item.get("kind") != "computed":
            _recompute_requests(
                cfg, mapping, {**item, "created": result.get("created"), "changed_names": list(changed)}, recompute
            )
        if changed or kind == "created":
            changes = {n: [old, values.get(n)] for n, (old, _had) in changed.items()}
            record_events.append(_record_event(item, result, kind, changes))
    record_events = _merged(record_events)
    propagations: list[tuple[str, tuple[Any, ...]]] = []
    for (entity, target), items in pushes.items():
        propagations.append((PROPAGATE_JOB, (entity, target, items)))
        counts["propagations"] += len(items)
    rules = [(RULES_JOB, (record_events,))] if record_events and run_rules else []
    counts["record_events"] += len(record_events)
    if in_place:
        propagations = [f for f in propagations if not follow_up(rt, outbox, *f, counts)]
    if propagated is not None:
        propagated()
    if in_place:
        rules = [f for f in rules if not follow_up(rt, outbox, *f, counts)]
    follow_ups = propagations + rules
    with rt.redis.pipeline(transaction=True) as pipe:
        for func, args in follow_ups:
            jobs.push(pipe, rt.redis, func, *args)
        for entity, keys in recompute.items():
            jobs.push(pipe, rt.redis, RECOMPUTE_JOB, entity, sorted(keys), queue_name=jobs.QUEUE_LOW)
        for c in conflicts:
            pipe.lpush("hub:conflicts", json.dumps(c))
        if conflicts:
            pipe.ltrim("hub:conflicts", 0, 9999)
        if repairs:
            jobs.push(pipe, rt.redis, "hub.engine.propagate.repair", repairs)
        pipe.delete(outbox)
        scripts.transaction(pipe)
    return counts


def follow_ups_outbox(outbox: str) -> str:
    """Where the follow-ups run in place by the job of ``outbox`` record their writes (one at a time)."""
    return f"{outbox}:follow-ups"


def follow_up(rt: Runtime, outbox: str, func: str, args: tuple[Any, ...], counts: dict[str, int]) -> bool:
    """Run a propagation or a rules batch in the draining job; False if it failed (it is then
    enqueued as a job of its own, retried by its own policy, without ingesting again).

    In place, a webhook batch costs one job instead of three: rq's bookkeeping of a job costs
    about as much CPU as propagating a batch or evaluating its rules, and the rules fire without
    waiting in a queue. Its writes go to an outbox of their own, drained when it ends; a retried
    attempt of the draining job drains what a killed one left there."""
    from hub.engine.propagate import propagate_items
    from hub.engine.rules import run_record_events

    own = follow_ups_outbox(outbox)
    try:
        if func == PROPAGATE_JOB:
            propagate_items(rt, *args, outbox=own)
        else:
            run_record_events(rt, *args, outbox=own)
    except redis.RedisError:
        raise  # Redis is gone: the whole job is retried once it is back, and resumes
    except Exception as exc:
        log.warning("%s failed in place, queued as a job of its own: %s: %s", func, type(exc).__name__, exc)
        drain(rt, own)  # what it recorded before failing is drained like any job's
        counts["follow_ups_queued"] += 1
        return False
    counts["follow_ups_in_place"] += 1
    return True


def _merged(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One event per record per drain: a change, the computed fields it moved and the ids learned on
    the way are one occurrence for the rules, not three (an `updated` rule fires once)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for ev in events:
        k = (ev["entity"], str(ev.get("key")))
        first = out.get(k)
        if first is None or ev["kind"] == "deleted" or first["kind"] == "deleted":
            out[k] = ev
            continue
        changes = dict(first["changes"])
        for name, (old, new) in ev["changes"].items():
            changes[name] = [changes[name][0] if name in changes else old, new]
        out[k] = {
            **first,
            "kind": "created" if "created" in (first["kind"], ev["kind"]) else ev["kind"],
            "changes": changes,
            "values": {**first["values"], **ev["values"]},
            "version": max(first["version"], ev["version"]),
            "occurrence": ev["occurrence"] if ev["version"] >= first["version"] else first["occurrence"],
            "caused_by": first.get("caused_by") if first.get("caused_by") == ev.get("caused_by") else None,
        }
        # Computed values stay fresh only if the later change computed them too or changed nothing.
        computed = ev.get("computed") or (None if ev["changes"] else first.get("computed"))
        out[k].pop("computed", None)
        if computed:
            out[k]["computed"] = computed
    return list(out.values())


def _recompute_requests(cfg: Config, mapping: Mapping, item: dict[str, Any], out: dict[str, set[str]]) -> None:
    """Computed fields of this record (if their inputs changed), and aggregates of the records it
    belongs to, may have moved."""
    # Own computed fields: when the record is new or an input changed (aggregates move with their
    # related records, below).
    changed = set(item.get("changed_names") or [])
    inline = item.get("computed")
    if computed_names(mapping) and not inline and (item.get("created") or computed_inputs(mapping) & changed):
        out[mapping.entity].add(item["key"])
    for parent, keys in parents_of(cfg, mapping.entity, item.get("values") or {}).items():
        out[parent].update(keys)


def _kind(item: dict[str, Any], result: dict[str, Any]) -> str:
    if result.get("created") and item.get("kind") in ("created", "unknown", "rule"):
        return "created"
    return "updated"


def _hinted(mapping: Mapping, system: str, hint: list[str]) -> set[str]:
    target = getattr(mapping.systems, system)
    names = set(hint)
    return {c for c, sf in target.fields.items() if sf.field in names or sf.field.split(".")[0] in names}


def _record_event(item: dict[str, Any], result: dict[str, Any], kind: str, changes: dict[str, Any]) -> dict[str, Any]:
    event = {
        "entity": item["entity"],
        "key": item.get("key"),
        "kind": kind,
        "system": item["system"],
        "id": item["id"],
        "version": result.get("version", 0),
        "occurrence": f"{item['entity']}:{item.get('key')}:v{result.get('version', 0)}",
        "changes": changes,
        "values": item.get("values") or {},
        "source_kind": item.get("kind"),  # "computed": the hub's own computed write
        "caused_by": item.get("rule"),  # the rule whose action made this change (it does not re-trigger itself)
        "at_ms": item.get("at_ms"),
    }
    if item.get("computed"):
        event["computed"] = item["computed"]  # computed from these very values: the rules need not again
    return event
