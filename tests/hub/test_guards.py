"""Guards decided together (one round trip) decide as they would one after the other."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import redis

from hub.engine.guards import Ask, Guards

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
PLAN = [{"step": "do.0", "action": "record.set", "args": {"fields": {"status": "x"}}}]


def _ask(rule: str, occurrence: str, record: str, **guards: object) -> Ask:
    options: dict[str, object] = {"cooldown_s": None, "daily_limit": None, "budget": None, **guards}
    return Ask(rule_id=rule, occurrence=occurrence, record=record, plan=PLAN, now=NOW, timezone="Europe/Paris",
               **options)  # type: ignore[arg-type]  # fmt: skip


def test_guards_decided_together_are_taken_in_order_each_seeing_the_ones_before(redis_conn: redis.Redis) -> None:
    g = Guards(redis_conn)
    asks = [
        _ask("cool", "o1", "r1", cooldown_s=3600),
        _ask("cool", "o2", "r1", cooldown_s=3600),  # same record, an hour's cooldown: the first consumed it
        _ask("cool", "o3", "r2", cooldown_s=3600),  # another record
        _ask("daily", "o1", "r1", daily_limit=2),
        _ask("daily", "o2", "r2", daily_limit=2),
        _ask("daily", "o3", "r3", daily_limit=2),  # the third of the day
        _ask("a", "o1", "r9", budget=("monthly", 1, 30 * 86400)),
        _ask("b", "o1", "r9", budget=("monthly", 1, 30 * 86400)),  # another rule, the same contact budget
    ]
    decided = [(d.fire, d.reason) for d in g.decide(asks)]
    assert decided == [
        (True, "fired"), (False, "cooldown"), (True, "fired"),
        (True, "fired"), (True, "fired"), (False, "daily_limit"),
        (True, "fired"), (False, "budget"),
    ]  # fmt: skip
    # Asked again (a retried job), each occurrence gets the decision it had, plan included.
    again = g.decide(list(reversed(asks)))
    assert [(d.fire, d.reason) for d in reversed(again)] == decided
    assert again[-1].plan == PLAN
    # An hour later the cooldown is over for a new occurrence.
    later = replace(_ask("cool", "o4", "r1", cooldown_s=3600), now=NOW + timedelta(seconds=3600))
    assert [(d.fire, d.reason) for d in g.decide([later])] == [(True, "fired")]
