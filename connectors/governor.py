"""Quota governors shared by every worker process through Redis.

A :class:`RateGovernor` hands out evenly spaced request slots (a reservation form of GCRA): each
caller atomically books the next free slot and sleeps until it. All processes book from the same
Redis key, so together they stay under the vendor's limit instead of discovering it with 429s.
A 429 that still happens pushes every caller back by the vendor's penalty (:meth:`penalize`).

Spacing alone trusts that a request reaches the vendor at its slot. A stalled process (ours or
the vendor's edge) or a TCP retransmit can deliver it late, into the next slots' window, and the
vendor counts arrivals. So each slot is also logged in Redis, and a request whose answer took
longer than the fastest recent one has its logged time moved later by the difference. No slot is
booked less than a window after the ``limit``-th latest logged request: what the vendor counts.

A :class:`ConcurrencyGovernor` caps simultaneous requests (Mailchimp's 10 connections) with
leases that expire if a worker dies holding one.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis

from hub import ids
from hub.errors import RateLimited
from hub.scripts import Script, pipeline

# Book the next slot. KEYS[1]: the "theoretical arrival time" (seconds, float, as a string); KEYS[2]:
# the log, a zset of recent slots (member: the slot as booked; score: when it reached the vendor at
# the latest). ARGV: interval between slots, seconds the keys may outlive the last slot, the limit
# per window, the window, a slot given up (its caller woke too late to use it) or ''.
# Returns {seconds to wait, the slot}, as strings (Lua numbers lose precision).
_BOOK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit = tonumber(ARGV[3])
if ARGV[5] ~= '' then redis.call('ZREM', KEYS[2], ARGV[5]) end
local start = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local kth = redis.call('ZREVRANGE', KEYS[2], limit - 1, limit - 1, 'WITHSCORES')
if kth[2] then start = math.max(start, tonumber(kth[2]) + tonumber(ARGV[4])) end
local slot = string.format('%.6f', start)
local ttl = math.ceil((start - now + tonumber(ARGV[1]) + tonumber(ARGV[2])) * 1000)
redis.call('SET', KEYS[1], string.format('%.6f', start + tonumber(ARGV[1])), 'PX', ttl)
redis.call('ZADD', KEYS[2], start, slot)
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -2 * limit - 1)
redis.call('PEXPIRE', KEYS[2], ttl)
return {string.format('%.6f', start - now), slot}
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
    Hold :meth:`slot` around each request: its log is what catches the larger delays.
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
        self.log_key = f"{self.key}:log"
        self.interval = per / rate * (1.0 + margin)
        self.limit = max(int(rate), 1)
        # Slack the margin leaves in one window, and half of it as the lateness a request may have.
        self.tolerance = max(per * margin / 2, 0.002)
        self.window = per + self.tolerance
        self.max_wait = max_wait
        self._sleep = sleep
        self._took: deque[float] = deque(maxlen=32)  # recent answer times: the fastest is the norm

    @contextmanager
    def slot(self) -> Iterator[float]:
        """Hold a slot for one request: booked and waited for before it, settled after it.
        Yields the slot's time (Redis's clock, in seconds)."""
        booked, late = self._book()
        began = time.monotonic()
        try:
            yield float(booked)
        finally:
            self._settle(booked, late, time.monotonic() - began)

    def _book(self) -> tuple[str, float]:
        """Book a slot and sleep until it; returns the slot and how late the sleeper woke.

        A process that wakes up late (a loaded machine can stall a sleeper for 100 ms) would send
        its request into the next slot's window and bunch with it: it books a new slot instead.
        """
        slot, late = "", 0.0
        for _ in range(8):
            booked = time.monotonic()
            wait_s, got = _BOOK_SCRIPT(
                self.conn, [self.key, self.log_key],
                [f"{self.interval:.6f}", "60", str(self.limit), f"{self.window:.6f}", slot],
            )
            wait = float(wait_s)
            if wait > self.max_wait:
                raise RateLimited(f"quota {self.key} is booked {wait:.0f}s ahead", retry_after=wait)
            if wait > 0:
                self._sleep(wait)
            slot = got.decode() if isinstance(got, bytes) else str(got)
            late = max(time.monotonic() - booked - wait, 0.0)
            if late <= self.tolerance:
                break
        return slot, late

    def _settle(self, slot: str, late: float, took: float) -> None:
        """Log when ``slot``'s request may have reached the vendor, if later than its slot.

        Whatever the answer took beyond the fastest recent one is counted as delay on the way
        there (it may have been on the way back: then we only wait a little more than needed).
        On time, nothing is sent: the log already holds the slot.
        """
        self._took.append(took)
        late += took - min(self._took)
        if late > self.tolerance:
            self.conn.zadd(self.log_key, {slot: float(slot) + late}, xx=True, gt=True)

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
        token = ids.new_id()
        deadline = time.monotonic() + self.max_wait
        while not _LEASE_SCRIPT(self.conn, [self.key], [self.limit, token, self.lease]):
            if time.monotonic() > deadline:
                raise RateLimited(f"no free connection slot for {self.key} in {self.max_wait:.0f}s")
            time.sleep(self.poll)
        try:
            yield
        finally:
            pipeline(self.conn, [("ZREM", self.key, token)])  # the hot path's round trip, not redis-py's
