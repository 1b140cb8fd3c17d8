"""Scheduled rules: cron or interval, once or ``for_each`` record of an entity (a scan).

Scans stream the entity page by page through its home system's connector, so memory stays bounded
however many clients there are. Each firing's occurrence is (schedule slot, record), so a cron
job enqueued twice for the same slot acts once.
"""

from __future__ import annotations

import logging
from typing import Any

from hub import clock
from hub.config.loader import CompiledRule
from hub.config.rules import CronTrigger, EveryTrigger
from hub.engine import evaluate, history
from hub.engine.compute import iterate, load_related
from hub.engine.record import with_computed
from hub.errors import ConfigError, ExpressionError
from hub.jobs import hub_job
from hub.mapping.translate import complete
from hub.runtime import Runtime

log = logging.getLogger("hub.schedule")
SCAN_BATCH = 100  # firings of a scan decided together (one round trip), and no more held in memory


@hub_job
def run_scheduled(rule_id: str) -> dict[str, int]:
    rt = Runtime.current()
    rule = rt.config.rules.get(rule_id)
    if rule is None:
        return {"missing": 1}
    return run_rule(rt, rule)


def run_rule(rt: Runtime, rule: CompiledRule, *, dry_run: bool = False, manual: bool = False) -> dict[str, Any]:
    """One scheduled run of ``rule`` now. The cron's runs belong to their schedule slot (a slot run
    twice acts once); a ``manual`` run (``hub run``, an operator's button) is a new occurrence."""
    from hub.engine.rules import Firings, fire, occurrence_for_tick

    w = rule.model.when
    if not isinstance(w, CronTrigger | EveryTrigger):
        raise ConfigError(f"rule {rule.id!r} is not a scheduled rule (its trigger is {type(w).__name__})")
    if not rule.model.enabled:
        return {"disabled": 1}
    tick = f"manual:{clock.now().isoformat()}" if manual else occurrence_for_tick(rule, clock.now())
    event = {"kind": "schedule", "tick": tick}
    counts: dict[str, Any] = {"records": 0, "matched": 0}
    if w.for_each is None:
        outcome = "would fire" if dry_run else fire(rt, rule, None, event, tick, entity=None, key=None)
        counts[outcome] = 1
        return counts
    cfg = rt.config
    mapping = cfg.mapping(w.for_each.entity)
    related = load_related(rt, mapping)
    plans = []
    recorder = history.Buffer(rt.redis)
    firings = Firings(rt, recorder=recorder)

    def run_firings() -> None:  # SCAN_BATCH at a time: guards in one round trip, history in one more
        try:
            for outcome in firings.run():
                counts[outcome] = counts.get(outcome, 0) + 1
        finally:
            recorder.flush()

    for key, values in iterate(rt, mapping):
        counts["records"] += 1
        record = with_computed(rt, mapping, complete(mapping, values), related)
        ctx = evaluate.context(rule, record, event, [], cfg.rules_file.templates)
        try:
            if w.for_each.where is not None and not w.for_each.where(ctx):
                continue
        except ExpressionError as exc:
            counts["errors"] = counts.get("errors", 0) + 1
            log.warning("rule %s: for_each.where: %s", rule.id, exc)
            continue
        counts["matched"] += 1
        if dry_run:
            try:
                if evaluate.condition(rule, ctx):
                    plans.append({"record": key, "actions": [a.as_json() for a in evaluate.plan(rule, ctx)]})
            except ExpressionError as exc:
                plans.append({"record": key, "error": str(exc)})
            continue
        firings.add(rule, record, event, f"{tick}:{key}", entity=mapping.entity, key=key)
        if len(firings.firings) >= SCAN_BATCH:
            run_firings()
    run_firings()
    if dry_run:
        counts["plans"] = plans
    return counts
