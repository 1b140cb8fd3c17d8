"""Lua scripts and command batches on the hot paths, without redis-py's per-command cost.

On a webhook request or a sync batch, redis-py's command path (pool bookkeeping and telemetry,
argument checks, the retry wrapper, ``Script``'s isinstance against a typing Protocol) costs
more CPU than the round trip itself. A :class:`Script` packs its EVALSHA once with hiredis and
sends it on connections of its own, made exactly like the client's (same class, address, auth,
TLS, timeouts) and kept in a small free list per connection pool and process.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any

import hiredis
import redis
from redis.connection import AbstractConnection

from hub import ids

Arg = str | bytes | int | float


class Script:
    """A Lua script, called as ``script(conn, keys, args)``; loaded into Redis when it is missing.

    ``repeatable``: running it twice does no harm (it checks before it writes), so a call is sent
    again once on a fresh connection whenever its connection broke or timed out, not only when an
    idle connection had gone stale.
    """

    def __init__(self, text: str, *, repeatable: bool = False) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()
        self.repeatable = repeatable

    def __call__(self, r: redis.Redis, keys: Sequence[Arg], args: Sequence[Arg] = ()) -> Any:
        return self.many(r, [(keys, args)])[0]

    def many(self, r: redis.Redis, calls: Sequence[tuple[Sequence[Arg], Sequence[Arg]]]) -> list[Any]:
        """Several calls in one round trip (pipelined, not atomic), their replies in order."""
        if not calls:
            return []
        payload = b"".join(hiredis.pack_command(("EVALSHA", self.sha, len(k), *k, *a)) for k, a in calls)
        lane = _lane(r)
        try:
            return lane.send(payload, len(calls), self.repeatable)
        except redis.exceptions.NoScriptError:
            r.script_load(self.text)  # a restarted or flushed Redis forgot it
            return lane.send(payload, len(calls), self.repeatable)


def pipeline(r: redis.Redis, commands: Sequence[Sequence[Arg]]) -> list[Any]:
    """Plain commands in one round trip (not atomic), raw replies in order: bytes, ints, lists, and
    for a hash a dict (RESP3) or a flat list (RESP2). For the hot paths that send many at once."""
    if not commands:
        return []
    payload = b"".join(hiredis.pack_command(tuple(c)) for c in commands)
    return _lane(r).send(payload, len(commands), False)


def transaction(pipe: redis.client.Pipeline) -> None:
    """Send the commands queued on a redis-py pipeline as one MULTI/EXEC, in one round trip, for
    callers that ignore the replies (rq's job bookkeeping, the sync's enqueues): redis-py's own
    ``execute()`` costs more CPU per command than Redis spends on it. A failed command is raised."""
    stack = pipe.command_stack
    if not stack:
        return
    replies = pipeline(pipe, [("MULTI",), *(args for args, _ in stack), ("EXEC",)])
    pipe.reset()
    for reply in replies[-1] or ():
        if isinstance(reply, Exception):
            raise reply


class _Lane:
    """Idle connections of one pool, for this process (a forked child never reuses its parent's)."""

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._make = pool.connection_class
        self._kwargs = dict(pool.connection_kwargs)
        self._idle: deque[AbstractConnection] = deque()
        self._pid = ids.pid()

    def _take(self) -> tuple[AbstractConnection, bool]:
        """A connection, and whether it was used before (it may have gone stale since)."""
        if self._pid != ids.pid():
            self._idle, self._pid = deque(), ids.pid()
        try:
            return self._idle.pop(), True
        except IndexError:
            return self._make(**self._kwargs), False

    def send(self, payload: bytes, replies: int, repeatable: bool) -> list[Any]:
        """Send packed commands and read their ``replies``; the first error reply is raised once
        every reply has been read. A connection that broke is replaced and the batch sent once
        more when the broken one was an idle one (Redis restarted or dropped it meanwhile: what
        was sent never ran, as redis-py assumes too) or when the batch is ``repeatable``."""
        for attempt in (1, 2):
            conn, reused = self._take()
            out: list[Any] = []
            error: redis.exceptions.ResponseError | None = None
            try:
                conn.send_packed_command([payload])
                for _ in range(replies):
                    try:
                        out.append(conn.read_response())
                    except redis.exceptions.ResponseError as exc:  # the connection is still in step
                        error = error or exc
                        out.append(exc)
            except redis.exceptions.ConnectionError:
                conn.disconnect()
                self._idle.clear()  # Redis restarted or the network broke: the others are stale too
                if attempt == 2 or not (reused or repeatable):
                    raise
                continue
            except redis.exceptions.TimeoutError:
                conn.disconnect()  # Redis may still be running it: only a repeatable batch goes again
                if attempt == 2 or not repeatable:
                    raise
                continue
            except BaseException:
                conn.disconnect()  # interrupted mid-reply: the connection's state is unknown
                raise
            self._idle.append(conn)
            if error is not None:
                raise error
            return out
        raise AssertionError("unreachable")


_lanes: weakref.WeakKeyDictionary[redis.ConnectionPool, _Lane] = weakref.WeakKeyDictionary()
_lanes_lock = threading.Lock()


def _lane(r: redis.Redis) -> _Lane:
    pool = r.connection_pool
    lane = _lanes.get(pool)
    if lane is None:
        with _lanes_lock:
            lane = _lanes.get(pool)
            if lane is None:
                lane = _lanes[pool] = _Lane(pool)
    return lane
