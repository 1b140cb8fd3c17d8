"""Guards and the firing decision, taken once per trigger occurrence.

One Lua script checks cooldown, daily limit and contact budget, and — only if all pass — consumes
them and stores the decision with its planned actions. A retried or duplicated job finds the
stored decision and executes the same plan: guards are never consumed twice, and a firing that was
decided is never dropped half-way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import redis

from hub import fastjson
from hub.scripts import Script

DECISION_TTL = 35 * 86400

_DECIDE = """
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
local now = tonumber(ARGV[2])
local function skip(reason)
  local d = cjson.encode({fire = false, reason = reason})
  redis.call('SET', KEYS[1], d, 'EX', ARGV[8])
  return d
end
if KEYS[2] ~= '' and tonumber(redis.call('GET', KEYS[2]) or '0') > now then return skip('cooldown') end
if KEYS[3] ~= '' and tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[4]) then
  return skip('daily_limit')
end
if KEYS[4] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[7]))
  if redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[6]) then return skip('budget') end
end
-- The cooldown ends on the hub clock (the value); the expiry only cleans up afterwards.
if KEYS[2] ~= '' then redis.call('SET', KEYS[2], now + tonumber(ARGV[3]), 'EX', tonumber(ARGV[3]) + 86400) end
if KEYS[3] ~= '' then
  redis.call('INCR', KEYS[3])
  redis.call('EXPIRE', KEYS[3], ARGV[5])
end
if KEYS[4] ~= '' then
  redis.call('ZADD', KEYS[4], now, ARGV[9])
  redis.call('EXPIRE', KEYS[4], math.ceil(tonumber(ARGV[7])) + 60)
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[8])
return ARGV[1]
"""


@dataclass
class Guarded:
    fire: bool
    reason: str
    plan: list[dict[str, Any]]


@dataclass
class Ask:
    """What the guards are asked for one trigger occurrence of a rule."""

    rule_id: str
    occurrence: str
    record: str  # the record's hash, or "-"
    plan: list[dict[str, Any]]
    now: datetime
    timezone: str
    cooldown_s: int | None
    daily_limit: int | None
    budget: tuple[str, int, int] | None  # (name, max, window seconds)

    def call(self) -> tuple[list[str], list[str | int | bytes]]:
        """KEYS and ARGV of its _DECIDE."""
        local_day = self.now.astimezone(ZoneInfo(self.timezone)).date().isoformat()
        keys = [
            f"hub:decision:{self.rule_id}:{self.occurrence}",
            f"hub:cooldown:{self.rule_id}:{self.record}" if self.cooldown_s else "",
            f"hub:daily:{self.rule_id}:{local_day}" if self.daily_limit else "",
            f"hub:budget:{self.budget[0]}:{self.record}" if self.budget else "",
        ]
        args: list[str | int | bytes] = [
            fastjson.dumps({"fire": True, "reason": "fired", "plan": self.plan}),
            f"{self.now.timestamp():.3f}",
            self.cooldown_s or 0,
            self.daily_limit or 0,
            2 * 86400,
            self.budget[1] if self.budget else 0,
            self.budget[2] if self.budget else 0,
            DECISION_TTL,
            f"{self.rule_id}:{self.occurrence}",
        ]
        return keys, args


_DECIDE_SCRIPT = Script(_DECIDE, repeatable=True)  # a repeat returns the decision the first one stored


class Guards:
    def __init__(self, conn: redis.Redis) -> None:
        self.conn = conn

    def decide(self, asks: list[Ask]) -> list[Guarded]:
        """The decisions for several occurrences in one round trip, taken in order (each atomic)."""
        out = []
        for reply in _DECIDE_SCRIPT.many(self.conn, [a.call() for a in asks]):
            raw = fastjson.loads(reply)
            out.append(Guarded(bool(raw.get("fire")), str(raw.get("reason", "")), list(raw.get("plan") or [])))
        return out

    def forget(self, rule_id: str, occurrence: str) -> None:
        self.conn.delete(f"hub:decision:{rule_id}:{occurrence}")
