"""Firestore changes into the hub: the relay endpoint (``POST /webhooks/firestore``) and ``listen``.

Firestore sends no webhooks. ``hub listen`` (a Procfile line, :mod:`webhooks.firestore_listen`)
watches the mapped collections. Users who already forward changes from Cloud Functions can post
them here instead, signed per Standard Webhooks with ``FIRESTORE_RELAY_SECRET``::

    {"collection": "clients", "id": "abc", "kind": "created|updated|deleted", "at": "<ISO time>"}

(or a list of those; ``at`` defaults to the delivery's time, ``fields`` optionally names the
changed fields). Both paths produce the same source events; the relay de-duplicates by
webhook-id + document, so a Cloud Function's retry is acknowledged and dropped.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app

from hub.runtime import Runtime
from hub.settings import Settings
from webhooks import standard
from webhooks.intake import Reject, accept, answer, body, dedupe_key, guarded, parse_json, require_content_type

log = logging.getLogger("hub.webhooks.firestore")

bp = Blueprint("firestore_webhooks", __name__)

PATH = "/webhooks/firestore"
GROUP = "**/"
KINDS = ("created", "updated", "deleted")
MAX_EVENTS = 500  # one Firestore batch write at most; a bigger relay delivery is a sender bug


def mapped_collections(rt: Runtime) -> list[str]:
    """Firestore collections named by the mappings (paths, or ``**/<id>`` collection groups)."""
    names = {m.systems.firestore.collection for m in rt.config.mappings.values() if m.systems.firestore}
    return sorted(names)


def source_event(coll: str, doc_id: str, kind: str, at_ms: int, fields: list[str] | None = None) -> dict[str, Any]:
    """The normalised source event for one document change."""
    return {"system": "firestore", "coll": coll, "base": "", "id": doc_id, "kind": kind, "at_ms": at_ms,
            "fields": sorted(set(fields or []))}  # fmt: skip


def resolve(collection: str, doc_id: str, mapped: list[str]) -> tuple[str, str] | None:
    """(coll as the mapping names it, record id) for a changed document, or None if unmapped. A
    subcollection document belongs to a ``**/<id>`` mapping, whose record ids are document paths."""
    path = collection.strip("/")
    if path in mapped:
        return path, doc_id
    group = GROUP + path.rsplit("/", 1)[-1]
    if group in mapped:
        return group, f"{path}/{doc_id}"
    return None


# -- the relay ----------------------------------------------------------------------------------
def _time_ms(value: Any, index: int) -> int:
    if not isinstance(value, str):
        raise Reject(400, f"change {index}: 'at' must be an ISO 8601 time string, got {value!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Reject(400, f"change {index}: 'at' is not an ISO 8601 time: {value!r}") from None
    if moment.tzinfo is None:
        raise Reject(400, f"change {index}: 'at' needs a timezone (e.g. 'Z'): {value!r}")
    return int(moment.timestamp() * 1000)


def _text(change: dict[str, Any], name: str, index: int) -> str:
    value = change.get(name)
    if not isinstance(value, str) or not value.strip("/"):
        raise Reject(400, f"change {index}: '{name}' must be a non-empty string, got {value!r}")
    return value


def _fold(earlier: str, later: str) -> str:
    """Two changes of one document in one delivery: a deletion last wins, a creation outranks an update."""
    if later == "deleted" or earlier == "deleted":
        return later
    return "created" if "created" in (earlier, later) else "updated"


def parse_changes(payload: Any, sent_ms: int, mapped: list[str]) -> tuple[list[dict[str, Any]], int]:
    """Source events (one per document) from a relay body, and how many changes were unmapped."""
    changes = payload if isinstance(payload, list) else [payload]
    if not changes or len(changes) > MAX_EVENTS:
        raise Reject(400, f"expected 1 to {MAX_EVENTS} changes, got {len(changes)}")
    docs: dict[tuple[str, str], dict[str, Any]] = {}
    ignored = 0
    for index, change in enumerate(changes):
        if not isinstance(change, dict):
            raise Reject(400, f"change {index}: expected an object, got {type(change).__name__}")
        collection, doc_id = _text(change, "collection", index), _text(change, "id", index)
        if "/" in doc_id:
            raise Reject(400, f"change {index}: 'id' is a document id, not a path (put the path in 'collection')")
        kind = change.get("kind")
        if kind not in KINDS:
            raise Reject(400, f"change {index}: 'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
        at_ms = _time_ms(change["at"], index) if "at" in change else sent_ms
        fields = change.get("fields") or []
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise Reject(400, f"change {index}: 'fields' must be a list of field names")
        target = resolve(collection, doc_id, mapped)
        if target is None:
            ignored += 1
            continue
        seen = docs.get(target)
        if seen is None:
            docs[target] = source_event(*target, kind, at_ms, fields)
            continue
        first, last = (seen["kind"], kind) if at_ms >= seen["at_ms"] else (kind, seen["kind"])
        seen.update(kind=_fold(first, last), at_ms=max(at_ms, seen["at_ms"]),
                    fields=sorted({*seen["fields"], *fields}))  # fmt: skip
    return list(docs.values()), ignored


@bp.post(PATH)
@guarded
def relay() -> Response:
    """Verify, parse, de-duplicate and enqueue changes relayed from Cloud Functions."""
    raw = body()
    require_content_type("application/json")
    settings: Settings = current_app.extensions["hub.settings"]
    secret = settings.get("FIRESTORE_RELAY_SECRET")
    if not secret:
        log.error("FIRESTORE_RELAY_SECRET is not set: relayed Firestore changes cannot be verified")
        raise Reject(503, "the Firestore relay is not configured (FIRESTORE_RELAY_SECRET)")
    verified = standard.verify_request(secret, raw, standard.TOLERANCE, "the Firestore relay")
    runtime: Runtime = current_app.extensions["hub.runtime"]
    events, ignored = parse_changes(parse_json(raw), verified.timestamp * 1000, mapped_collections(runtime))
    if ignored:
        log.info("firestore relay: %d change(s) in unmapped collections acknowledged", ignored)
    keys = [dedupe_key("firestore", ["relay", verified.id, ev["coll"], ev["id"]]) for ev in events]
    return answer(accept("firestore", events, keys))


# -- the listener -------------------------------------------------------------------------------
def listen(rt: Runtime) -> None:
    """Run the Firestore listener until SIGTERM/SIGINT (``hub listen``), logging like ``hub worker``."""
    from webhooks.firestore_listen import run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    run(rt)
