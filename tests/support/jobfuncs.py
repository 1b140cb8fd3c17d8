"""Job functions for the job tests; a real worker process imports them by name."""

from __future__ import annotations

import time

from hub.errors import ConfigError, PermanentError, TransientError
from hub.jobs import hub_job
from hub.runtime import Runtime


def _redis():  # type: ignore[no-untyped-def]
    return Runtime.current().redis


@hub_job
def record(key: str, value: str) -> str:
    _redis().set(key, value)
    return value


@hub_job
def flaky(key: str, failures: int, retry_after: float) -> int:
    """Fails ``failures`` times with a transient error, then succeeds; logs each attempt's time."""
    conn = _redis()
    conn.rpush(f"{key}:attempts", repr(time.time()))
    n = int(conn.incr(key))
    if n <= failures:
        raise TransientError(f"attempt {n} failed", retry_after=retry_after)
    return n


@hub_job
def permanent(key: str) -> None:
    _redis().incr(key)
    raise PermanentError("field does not exist", system="airtable", obj="Clients", field="Emial", status=422)


@hub_job
def config_error(key: str) -> None:
    _redis().incr(key)
    raise ConfigError("environment variable AIRTABLE_API_KEY is not set")



@hub_job
def bump(key: str) -> int:
    return int(_redis().incr(key))


@hub_job
def gc_state(key: str) -> None:
    """What the worker's garbage collector is set to (its young-generation threshold, and how many
    objects it has frozen)."""
    import gc

    _redis().set(key, f"{gc.get_threshold()[0]} {gc.get_freeze_count()}")
