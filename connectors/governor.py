"""Quota governors shared by every worker process through Redis.

A :class:`RateGovernor` hands out evenly spaced request slots (a reservation form of GCRA): each
caller atomically books the next free slot and sleeps until it. All processes book from the same
Redis key, so together they stay under the vendor's limit instead of discovering it with 429s.
A 429 that still happens pushes every caller back by the vendor's penalty (:meth:`penalize`).

A :class:`ConcurrencyGovernor` caps simultaneous requests (Mailchimp's 10 connections) with
leases that expire if a worker dies holding one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis

from hub.errors import RateLimited
from hub.scripts import Script

# Book the next slot. KEYS[1]: the "theoretical arrival time" (seconds, float, as a string).
# ARGV[1]: interval between slots; ARGV[2]: seconds the key may outlive its last slot.
# Returns the seconds to wait before the booked slot, as a string (Lua numbers lose precision).
_BOOK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local start = math.max(tat, now)
redis.call('SET', KEYS[1], string.format('%.6f', start + tonumber(ARGV[1])),
           'PX', math.ceil((start - now + tonumber(ARGV[1]) + tonumber(ARGV[2])) * 1000))
return string.format('%.6f', start - now)
"""

# Push the next slot to at least now + penalty (a 429 told us everyone must back off).
_PENALIZE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local until_ = now + tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > tat then
  redis.call('SET', KEYS[1], string.format('%.6f', until_), 'PX', math.ceil((tonumber(ARGV[1]) + 60) * 1000))
end
return 1
"""

# Lease one of ARGV[1] slots for ARGV[3] seconds; KEYS[1] is a zset token -> expiry.
_LEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])) + 60)
  return 1
end
return 0
"""

_BOOK_SCRIPT = Script(_BOOK)
_PENALIZE_SCRIPT = Script(_PENALIZE)
_LEASE_SCRIPT = Script(_LEASE)


class RateGovernor:
    """At most ``rate`` requests per ``per`` seconds for one quota (a base, a token, an endpoint).

    ``margin`` widens the spacing a little (0.05 = 5 %) so network jitter between the booked
    slot and the request's arrival cannot bunch requests into a window the vendor counts.
    """

    def __init__(
        self,
        conn: redis.Redis,
        key: str,
        *,
        rate: float,
        per: float = 1.0,
        margin: float = 0.0,
        max_wait: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or per <= 0:
            raise ValueError(f"rate and per must be positive, got rate={rate!r} per={per!r}")
        self.conn = conn
        self.key = f"hub:quota:{key}"
        self.interval = per / rate * (1.0 + margin)
        # Slack the margin leaves in one window, and half of it as the lateness a request may have.
        self.tolerance = max(per * margin / 2, 0.002)
        self.max_wait = max_wait
        self._sleep = sleep

    def acquire(self) -> float:
        """Book a slot and sleep until it; returns the seconds waited.

        A process that wakes up late (a loaded machine can stall a sleeper for 100 ms) would send
        its request into the next slot's window and bunch with it: it books a new slot instead.
        """
        waited = 0.0
        for _ in range(8):
            booked = time.monotonic()
            wait = float(_BOOK_SCRIPT(self.conn, [self.key], [f"{self.interval:.6f}", "60"]))
            if wait > self.max_wait:
                raise RateLimited(f"quota {self.key} is booked {wait:.0f}s ahead", retry_after=wait)
            if wait > 0:
                self._sleep(wait)
            late = time.monotonic() - booked - wait
            waited += wait
            if late <= self.tolerance:
                return waited
        return waited

    def penalize(self, seconds: float) -> None:
        """Nobody sends before ``seconds`` from now (honours a 429's Retry-After or penalty)."""
        _PENALIZE_SCRIPT(self.conn, [self.key], [f"{max(seconds, 0.0):.6f}"])


class ConcurrencyGovernor:
    """At most ``limit`` requests in flight at once across all processes."""

    def __init__(
        self,
        conn: redis.Redis,
        key: str,
        *,
        limit: int,
        lease: float = 120.0,
        poll: float = 0.01,
        max_wait: float = 300.0,
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be ≥ 1, got {limit!r}")
        self.conn = conn
        self.key = f"hub:inflight:{key}"
        self.limit = limit
        self.lease = lease
        self.poll = poll
        self.max_wait = max_wait

    @contextmanager
    def slot(self) -> Iterator[None]:
        token = uuid.uuid4().hex
        deadline = time.monotonic() + self.max_wait
        while not _LEASE_SCRIPT(self.conn, [self.key], [self.limit, token, self.lease]):
            if time.monotonic() > deadline:
                raise RateLimited(f"no free connection slot for {self.key} in {self.max_wait:.0f}s")
            time.sleep(self.poll)
        try:
            yield
        finally:
            self.conn.zrem(self.key, token)
