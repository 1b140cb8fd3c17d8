"""Writing agreed changes to the other systems, batched, and repairing refused edits.

A propagation job carries, per record, the changed canonical values. Before writing it checks
that each value is still the agreed one (a newer change may have overtaken it, jobs can run out
of order on many workers); a record with no counterpart yet is upserted on its identity field,
so a retried job finds the record it created instead of creating a second one.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from connectors.base import Write
from hub import clock
from hub.engine.entities import collection, collection_id, identity_field
from hub.engine.state import FieldObs, RecordState, fingerprint
from hub.engine.sync import drain, outbox_name
from hub.jobs import hub_job
from hub.mapping.translate import from_system, revive, system_field, to_system
from hub.runtime import Runtime

log = logging.getLogger("hub.sync")


def split_key(key: str) -> tuple[str, str]:
    name, _, value = key.partition(":")
    return name, value


def firestore_doc_id(key: str) -> str:
    """A stable document id for a record first written to Firestore by the hub."""
    return "hub-" + hashlib.sha256(key.encode()).hexdigest()[:24]


@hub_job
def propagate(entity: str, target: str, items: list[dict[str, Any]]) -> dict[str, int]:
    return propagate_items(Runtime.current(), entity, target, items, outbox=outbox_name())


def propagate_items(
    rt: Runtime, entity: str, target: str, items: list[dict[str, Any]], *, outbox: str
) -> dict[str, int]:
    """Write ``items`` (changed canonical values per record key) to ``target``, batched; the ids of
    records it creates there go through ``outbox``."""
    cfg = rt.config
    mapping = cfg.mappings.get(entity)
    if mapping is None or getattr(mapping.systems, target, None) is None:
        log.warning("propagate: %s is no longer mapped to %s; %d item(s) dropped", entity, target, len(items))
        return {"dropped": len(items)}
    state = RecordState(rt.redis)
    drain(rt, outbox)  # what an attempt killed between linking and draining left
    coll = collection(mapping, target)
    coll_id = collection_id(target, coll)
    connector = rt.connector(target)
    writes: list[Write] = []
    keys: list[str] = []
    sent: list[dict[str, str]] = []
    stale = 0
    merged: dict[str, dict[str, Any]] = {}
    for it in items:  # one write per record, whatever number of changes the batch carried
        merged.setdefault(it["key"], {}).update(it["values"])
    agreed = state.agreed(entity, merged, target)
    target_fields = getattr(mapping.systems, target).fields
    for key, values in merged.items():
        fps, target_id = agreed[key]
        ours = {n: fingerprint(v) for n, v in values.items()}
        send = {n: v for n, v in values.items() if fps[n] == ours[n]}
        stale += len(values) - len(send)
        if not send and target_id:
            continue
        typed = revive(mapping, send)  # the hub's own canonical JSON: typed once already, when read
        fields = to_system(mapping, target, typed)
        if target_id:
            writes.append(Write(fields, id=target_id))
        else:
            ident_name, ident_value = split_key(key)
            sf = system_field(mapping, target, ident_name)
            if target == "mailchimp" and mapping.consent and "status" not in fields:
                # A new member is subscribed only with marketing consent; else a transactional contact.
                fields["status_if_new"] = "subscribed" if typed.get(mapping.consent) is True else "transactional"
            if sf is not None and ident_value and not ident_name.endswith("_id"):
                ident_typed = revive(mapping, {ident_name: ident_value})
                fields.update(to_system(mapping, target, ident_typed, only={ident_name}))
                writes.append(Write(fields, match=sf))
            elif target == "firestore":
                writes.append(Write(fields, id=firestore_doc_id(key)))
            elif (ident := identity_field(mapping, target)) is not None and typed.get(ident[0]) is not None:
                writes.append(Write(fields, match=ident[1]))
            else:
                log.warning("propagate: %s record has no identity %s can match on; not created there", entity, target)
                continue
        keys.append(key)
        sent.append({n: ours[n] for n in send if n in target_fields})
    if not writes:
        return {"written": 0, "stale": stale}
    written = connector.upsert_many(coll, writes)
    id_field = f"{target}_id"
    created = [(key, rec.id) for key, write, rec in zip(keys, writes, written, strict=True) if write.id != rec.id]
    # Where a system maps the new id (a HubSpot id column in Airtable), it is a field like any other,
    # propagated through the outbox; else only the state's link (id and index) is kept, in the same
    # round trip as what was written.
    shown = any(id_field in sf.fields for _, sf in mapping.systems.items())
    state.written_many(
        entity,
        [(key, target, fps) for key, fps in zip(keys, sent, strict=True)],
        links=() if shown else [(key, target, coll_id, rid) for key, rid in created],
    )
    if shown and created:
        now_ms = int(clock.now().timestamp() * 1000)
        links = [
            {
                "entity": entity,
                "key": key,
                "system": target,
                "coll_id": coll_id,
                "record_id": rid,
                "source_ms": now_ms,
                "fields": [FieldObs(id_field, rid, "own")],
                "outbox": outbox,
                "item": {
                    "entity": entity,
                    "system": target,
                    "id": rid,
                    "kind": "link",
                    "key": key,
                    "values": {id_field: rid},
                    "at_ms": now_ms,
                },
            }
            for key, rid in created
        ]
        logged: list[dict[str, Any]] = []
        state.apply_many(links, logged=logged)
        drain(rt, outbox, entries=logged)
    return {"written": len(written), "stale": stale, "linked": len(created)}


@hub_job
def repair(conflicts: list[dict[str, Any]]) -> dict[str, int]:
    """Put the agreed value back where a system was edited against the ownership rules."""
    rt = Runtime.current()
    cfg = rt.config
    state = RecordState(rt.redis)
    repaired = 0
    for c in conflicts:
        mapping = cfg.mappings.get(c["entity"])
        if mapping is None:
            continue
        entity, key, name, edited = c["entity"], c["key"], c["field"], c["system"]
        agreed = state.fingerprints(entity, key, [name]).get(name)
        ids = state.ids(entity, key)
        value, found = None, False
        for system, _ in mapping.systems.items():
            if system == edited or system not in ids or system_field(mapping, system, name) is None:
                continue
            rec = rt.connector(system).get(collection(mapping, system), ids[system])
            if rec is None:
                continue
            candidate = from_system(mapping, system, rec).values.get(name)
            if fingerprint(candidate) == agreed:
                value, found = candidate, True
                break
        if not found or edited not in ids:
            log.info("repair: no system holds the agreed %s.%s any more; left as is", entity, name)
            continue
        fields = to_system(mapping, edited, {name: value}, only={name})
        if fields:
            rt.connector(edited).upsert_many(collection(mapping, edited), [Write(fields, id=ids[edited])])
            state.written(entity, key, edited, {name: fingerprint(value)})
            repaired += 1
    return {"repaired": repaired}
