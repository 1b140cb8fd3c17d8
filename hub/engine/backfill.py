"""``hub sync ENTITY --from A --to B``: a first or repair sync, streamed page by page, resumable.

The source is taken as the truth for the fields both systems map: each page is agreed in the
record state (so the writes are not echoed back as changes) and written to the target in vendor
batches. A checkpoint after each page lets an interrupted run resume where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hub import clock
from hub.engine.entities import collection, collection_id, record_key
from hub.engine.propagate import propagate
from hub.engine.state import FieldObs, RecordState
from hub.errors import ConfigError
from hub.mapping.translate import from_system
from hub.mapping.values import to_json
from hub.runtime import Runtime

log = logging.getLogger("hub.backfill")
PAGE = 100


@dataclass
class BackfillReport:
    entity: str
    source: str
    target: str
    read: int = 0
    written: int = 0
    skipped_resume: int = 0
    problems: list[str] = field(default_factory=list)
    sample: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False


def _pages(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    page: list[Any] = []
    for item in items:
        page.append(item)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


def checkpoint_key(entity: str, source: str, target: str) -> str:
    return f"hub:backfill:{entity}:{source}:{target}"


def backfill(
    rt: Runtime,
    entity: str,
    source: str,
    target: str,
    *,
    dry_run: bool = False,
    restart: bool = False,
    page_size: int = PAGE,
) -> BackfillReport:
    mapping = rt.config.mapping(entity)
    systems = [s for s, _ in mapping.systems.items()]
    for name in (source, target):
        if name not in systems:
            raise ConfigError(f"entity {entity!r} is not mapped to {name!r}; it lives in {', '.join(systems)}")
    if source == target:
        raise ConfigError("--from and --to must be different systems")
    shared = set(getattr(mapping.systems, source).fields) & {
        n for n, sf in getattr(mapping.systems, target).fields.items() if not sf.readonly
    }
    report = BackfillReport(entity, source, target)
    ck = checkpoint_key(entity, source, target)
    if restart:
        rt.redis.delete(ck)
    resume_after = 0 if dry_run else int(rt.redis.get(ck) or 0)
    state = RecordState(rt.redis)
    src_coll = collection(mapping, source)
    coll_id = collection_id(source, src_coll)
    seen = 0
    for page in _pages(rt.connector(source).iterate(src_coll, page_size=page_size), page_size):
        if seen + len(page) <= resume_after:
            seen += len(page)
            report.skipped_resume += len(page)
            continue
        items = []
        now_ms = int(clock.now().timestamp() * 1000)
        for rec in page[max(resume_after - seen, 0) :]:
            decoded = from_system(mapping, source, rec)
            report.problems.extend(str(p) for p in decoded.problems)
            values = {n: v for n, v in decoded.values.items() if n in shared or n == f"{source}_id"}
            key = record_key(mapping, decoded.values, source, rec.id)
            report.read += 1
            if dry_run:
                if len(report.sample) < 5:
                    report.sample.append({"source_id": rec.id, "fields": sorted(values)})
                continue
            state.apply(
                entity, key, source, coll_id, rec.id, now_ms, [FieldObs(n, v, "own") for n, v in decoded.values.items()]
            )
            items.append({"key": key, "values": to_json(values), "source": source})
        seen += len(page)
        if items:
            result = propagate(entity, target, items)
            report.written += int(result.get("written", 0))
        if not dry_run:
            rt.redis.set(ck, seen, ex=30 * 86400)
    report.done = True
    if not dry_run:
        rt.redis.delete(ck)
    return report
