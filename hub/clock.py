"""The one clock every "days since", wait and schedule reads.

Pinned by ``HUB_NOW`` (ISO 8601) or :func:`pin`, so tests and dry runs are reproducible.
Always timezone-aware UTC.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

_pinned: datetime | None = None
_from_env: tuple[str, datetime] | None = None  # HUB_NOW as last parsed (read on every now())


def parse_instant(text: str) -> datetime:
    """Parse an ISO date or datetime; naive values are taken as UTC."""
    raw = text.strip()
    if raw.endswith("Z"):
        raw = raw[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise ValueError(f"not an ISO 8601 date/time: {text!r}") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def now() -> datetime:
    """Current instant: the pinned one if any, else ``HUB_NOW``, else the system clock."""
    if _pinned is not None:
        return _pinned
    global _from_env
    env = os.environ.get("HUB_NOW")
    if env:
        if _from_env is None or _from_env[0] != env:
            _from_env = (env, parse_instant(env))
        return _from_env[1]
    return datetime.now(UTC)


def today() -> date:
    return now().date()


def pin(value: datetime | str | None) -> None:
    """Pin the clock for this process (``None`` unpins)."""
    global _pinned
    if isinstance(value, str):
        value = parse_instant(value)
    elif value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    _pinned = value


@contextmanager
def pinned(value: datetime | str) -> Iterator[None]:
    """Temporarily pin the clock (tests, dry runs)."""
    previous = _pinned
    pin(value)
    try:
        yield
    finally:
        pin(previous)
