"""The config file for ``rq cron`` (the Procfile's ``cron`` line): one cron job per scheduled rule,
plus the hub's own housekeeping. Edit rules.yaml and restart ``cron`` to change schedules.

rq cron enqueues with rq's default serializer; the hub's serializer reads those payloads (plain
values only), so the hub's JSON workers run them.
"""

from __future__ import annotations

import logging

from rq import cron

from hub.config.rules import CronTrigger, EveryTrigger
from hub.engine import compute, schedule, waits
from hub.engine.derived import computed_names
from hub.jobs import QUEUE_DEFAULT, QUEUE_LOW
from hub.runtime import Runtime
from webhooks import airtable as airtable_webhooks

log = logging.getLogger("hub.cron")


def register_all() -> int:
    cfg = Runtime.current().config
    for issue in cfg.issues:
        log.error("config: %s", issue)
    count = 0
    for rule in cfg.rules.values():
        w = rule.model.when
        if not rule.model.enabled or not isinstance(w, CronTrigger | EveryTrigger):
            continue
        options = {"cron": w.cron} if isinstance(w, CronTrigger) else {"interval": int(w.every.total_seconds())}
        cron.register(schedule.run_scheduled, QUEUE_LOW, args=(rule.id,), name=f"rule:{rule.id}", **options)
        count += 1
    for entity, mapping in cfg.mappings.items():
        if computed_names(mapping):
            cron.register(compute.recompute, QUEUE_LOW, args=(entity,), cron="30 3 * * *", name=f"recompute:{entity}")
    cron.register(waits.release_due, QUEUE_DEFAULT, interval=60, name="waits:release")
    # Airtable webhooks expire after 7 days: refresh them well before (and resume stalled fetches).
    cron.register(airtable_webhooks.refresh_webhooks, QUEUE_DEFAULT, interval=900, name="airtable:webhooks")
    return count


register_all()
