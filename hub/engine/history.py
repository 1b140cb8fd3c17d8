"""Run history: every rule evaluation (rule, record, trigger, decision, actions, duration), capped.

Records are named by a hash of their key and their system ids — never an email or a phone — so
the history can be shown and shipped without personal data. ``hub runs`` reads it.
"""

from __future__ import annotations

from typing import Any

import redis

from hub import fastjson, scripts
from hub.engine.entities import key_hash
from hub.engine.state import STATE_TTL

ALL = "hub:runs"
CAP_ALL = 20000
CAP_RULE = 2000
CAP_RECORD = 200
# A record's own list lives as long as the hub's state of that record: there is one per record ever
# evaluated, so without an expiry their number would only grow.
RECORD_TTL = STATE_TTL


def record(conn: redis.Redis | Any, entry: dict[str, Any]) -> None:
    """Append ``entry`` (with ``rule`` and ``record`` hash) to the capped lists; ``conn`` may be a pipeline."""
    text = fastjson.dumps(entry, default=str)
    pipe = conn.pipeline(transaction=False) if isinstance(conn, redis.Redis) else conn
    pipe.lpush(ALL, text)
    pipe.ltrim(ALL, 0, CAP_ALL - 1)
    pipe.lpush(f"{ALL}:rule:{entry['rule']}", text)
    pipe.ltrim(f"{ALL}:rule:{entry['rule']}", 0, CAP_RULE - 1)
    if entry.get("record"):
        own = f"{ALL}:rec:{entry['record']}"
        pipe.lpush(own, text)
        pipe.ltrim(own, 0, CAP_RECORD - 1)
        pipe.expire(own, RECORD_TTL)
    if pipe is not conn:
        pipe.execute()


class Buffer:
    """History entries of one job, written in one round trip at its end (a rules job evaluates
    hundreds of rules; one write each would double its Redis traffic)."""

    def __init__(self, conn: redis.Redis) -> None:
        self.conn = conn
        self.entries: list[dict[str, Any]] = []

    def __call__(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)

    def flush(self) -> None:
        """One LPUSH per list (newest first) and a trim only where a list outgrew its cap."""
        if not self.entries:
            return
        lists: dict[str, list[bytes]] = {}
        caps: dict[str, int] = {}
        for entry in self.entries:
            text = fastjson.dumps(entry, default=str)
            targets = [(ALL, CAP_ALL), (f"{ALL}:rule:{entry['rule']}", CAP_RULE)]
            if entry.get("record"):
                targets.append((f"{ALL}:rec:{entry['record']}", CAP_RECORD))
            for name, cap in targets:
                lists.setdefault(name, []).append(text)
                caps[name] = cap
        names = list(lists)
        pushes: list[tuple[Any, ...]] = [("LPUSH", name, *lists[name]) for name in names]
        expiries = [("EXPIRE", name, RECORD_TTL) for name in names if name.startswith(f"{ALL}:rec:")]
        lengths = scripts.pipeline(self.conn, pushes + expiries)[: len(names)]
        over = [("LTRIM", n, 0, caps[n] - 1) for n, length in zip(names, lengths, strict=True) if length > caps[n]]
        scripts.pipeline(self.conn, over)
        self.entries = []


def read(
    conn: redis.Redis, *, rule: str | None = None, record_key: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Newest first. ``record_key`` may be the record's key (``email:...``) or its hash."""
    if record_key:
        h = record_key if ":" not in record_key else key_hash(record_key)
        name = f"{ALL}:rec:{h}"
    elif rule:
        name = f"{ALL}:rule:{rule}"
    else:
        name = ALL
    out = []
    for raw in conn.lrange(name, 0, max(limit * 4, limit) - 1):
        entry = fastjson.loads(raw)
        if rule and entry.get("rule") != rule:
            continue
        out.append(entry)
        if len(out) >= limit:
            break
    return out
