"""Listening to a Firestore collection (``on_snapshot``) and the plain values the hub sees.

The intake's ``hub listen`` process builds on :func:`start_watch`; it only exposes what the SDK's
listener gives: change type, document id, data, update time and read time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.cloud.firestore_v1 import DocumentReference

log = logging.getLogger("hub.connectors.firestore")


def plain(value: Any) -> Any:
    """SDK values as plain Python: timestamps as tz-aware UTC datetimes (not the SDK's subclass,
    so they serialise like any other), references as their paths."""
    if isinstance(value, datetime):
        moment = datetime(value.year, value.month, value.day, value.hour, value.minute, value.second,
                          value.microsecond, tzinfo=value.tzinfo or UTC)
        return moment.astimezone(UTC)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, DocumentReference):
        return value.path
    return value


@dataclass(frozen=True)
class Change:
    """One document change seen by a watch."""

    type: str  # ADDED, MODIFIED or REMOVED
    id: str
    data: dict[str, Any] | None  # the document (for REMOVED: as last seen)
    update_time: datetime | None
    read_time: datetime | None


class WatchHandle:
    """A running listener: ``close()`` it; ``resume_token`` is the last snapshot's read time."""

    def __init__(self) -> None:
        self.resume_token: str | None = None
        self._watch: Any = None

    @property
    def active(self) -> bool:
        return self._watch is not None and bool(self._watch.is_active)

    def close(self) -> None:
        if self._watch is not None:
            self._watch.unsubscribe()
            self._watch = None


def _parse_token(token: str | None) -> datetime | None:
    if not token:
        return None
    try:
        since = datetime.fromisoformat(token)
    except ValueError as exc:
        raise ValueError(f"resume_token must be a WatchHandle.resume_token (ISO time), got {token!r}") from exc
    if since.tzinfo is None:
        raise ValueError(f"resume_token must carry a timezone, got {token!r}")
    return since


def start_watch(
    target: Any,
    callback: Callable[[list[Change]], None],
    *,
    id_of: Callable[[Any], str],
    resume_token: str | None = None,
    label: str = "",
) -> WatchHandle:
    """Call ``callback(changes)`` on the SDK's thread for every snapshot of ``target`` (a
    collection or query).

    The first snapshot lists every document as ADDED. The Python SDK does not expose the server's
    resume token, so ``resume_token`` is the ISO read time of the last snapshot seen
    (``handle.resume_token``): documents not updated since are left out of the first snapshot, the
    rest come as ADDED (created since) or MODIFIED. Deletions made while nobody listened are not
    reported. The SDK reconnects the stream by itself after transient errors.
    """
    since = _parse_token(resume_token)
    handle = WatchHandle()
    first = True

    def on_snapshot(_docs: Any, changes: Any, read_time: Any) -> None:
        nonlocal first
        batch: list[Change] = []
        for ch in changes:
            snap = ch.document
            kind = ch.type.name
            updated, created = plain(snap.update_time), plain(snap.create_time)
            if first and since is not None:
                if updated is not None and updated <= since:
                    continue
                kind = "ADDED" if created is not None and created > since else "MODIFIED"
            batch.append(Change(kind, id_of(snap), plain(snap.to_dict()), updated, plain(read_time)))
        first = False
        if read_time is not None:
            handle.resume_token = plain(read_time).isoformat()
        if not batch:
            return
        try:
            callback(batch)
        except Exception:  # the listener thread must survive a bad callback
            log.exception("firestore watch callback failed on %s", label)

    handle._watch = target.on_snapshot(on_snapshot)
    return handle
