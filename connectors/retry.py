"""Calling a vendor: take a quota slot, call, classify the failure, back off and try again.

Each connector supplies ``classify`` to turn its SDK's exception into a :class:`HubError`
(``RateLimited``/``TransientError`` with the server's Retry-After, or ``PermanentError`` naming
the system, object and field). Only transient errors are retried here; a 429 also pushes the
shared governor back so other workers wait too.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TypeVar

import redis

from connectors.governor import ConcurrencyGovernor, RateGovernor
from hub.errors import HubError, RateLimited, TransientError

T = TypeVar("T")
log = logging.getLogger("hub.connectors")


@dataclass
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: float = 0.5  # fraction of the delay added at random, so workers do not retry in step
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = min(self.base_delay * 2 ** (attempt - 1), self.max_delay)
        backoff += backoff * self.jitter * self.rng.random()
        return max(backoff, retry_after or 0.0)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta seconds; HTTP dates are rare at these vendors)."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


def call(
    fn: Callable[[], T],
    *,
    classify: Callable[[Exception], HubError],
    what: str,
    governor: RateGovernor | None = None,
    inflight: ConcurrencyGovernor | None = None,
    policy: RetryPolicy | None = None,
) -> T:
    """Run ``fn`` under the quota, retrying transient failures with backoff and jitter."""
    pol = policy or RetryPolicy()
    attempt = 0
    while True:
        attempt += 1
        try:
            with ExitStack() as held:
                if governor is not None:
                    held.enter_context(governor.slot())
                if inflight is not None:
                    held.enter_context(inflight.slot())
                return fn()
        except (HubError, redis.RedisError):
            raise  # ours already, or the hub's own Redis (the quota governors): not the vendor's fault
        except Exception as exc:
            err = classify(exc)
            if not isinstance(err, TransientError):
                raise err from exc
            if isinstance(err, RateLimited) and governor is not None:
                governor.penalize(err.retry_after or pol.base_delay)
            if attempt >= pol.attempts:
                raise err from exc
            wait = pol.delay(attempt, err.retry_after)
            log.info("%s: %s; retry %d/%d in %.2fs", what, err, attempt, pol.attempts - 1, wait)
            pol.sleep(wait)
