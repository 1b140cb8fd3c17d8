"""The shared rate governor on a real Redis, judged the way a vendor counts: arrivals in a sliding
window (the stand-ins' own :class:`SlidingWindow`). Its sleeps are replaced so the slots' times
can be read without waiting for them; the delays a request meets on its way are real sleeps."""

from __future__ import annotations

import time

import redis

from connectors.governor import RateGovernor
from hub.sandbox.common import SlidingWindow

RATE, PER, MARGIN = 5, 1.0, 0.05


def refusals(arrivals: list[float]) -> int:
    """How many of these arrivals a vendor allowing RATE per PER seconds would refuse."""
    window = SlidingWindow(RATE, PER)
    return sum(window.hit("base", t) > 0 for t in sorted(arrivals))


def test_a_request_that_arrived_late_pushes_back_the_slots_it_would_crowd(redis_conn: redis.Redis) -> None:
    gov = RateGovernor(redis_conn, "test:late", rate=RATE, per=PER, margin=MARGIN, sleep=lambda _: None)
    arrivals = []
    for i in range(14):
        with gov.slot() as at:
            delay = 0.3 if i == 3 else 0.0  # a retransmit or a stall: its answer is as late
            time.sleep(delay)
            arrivals.append(at + delay)
    # Spacing alone would send the ninth at 1.68 s: six arrivals from 0.84 s (the fifth) on.
    assert refusals(arrivals) == 0


def test_a_sleeper_that_woke_too_late_gives_its_slot_up(redis_conn: redis.Redis) -> None:
    stalls = [0.1]

    def stalled_sleep(seconds: float) -> None:
        time.sleep(seconds + (stalls.pop() if stalls else 0.0))

    gov = RateGovernor(redis_conn, "test:woke", rate=RATE, per=PER, margin=MARGIN, sleep=stalled_sleep)
    with gov.slot() as first:
        pass
    with gov.slot() as second:
        pass
    assert not stalls  # the stall happened, on the second slot's sleep
    assert second - first > 1.5 * gov.interval  # not its first slot, which the stall made late
    assert redis_conn.zcard(gov.log_key) == 2  # and the slot it gave up no longer counts
