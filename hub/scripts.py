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
        """Several calls in one round trip (pipelined, not atomic), their replies in order, each
        call run once.

        Redis can forget its scripts (a restart, ``SCRIPT FLUSH``) or learn one (another client
        loading it) between two calls of a batch. A call that meets NOSCRIPT did nothing, and the
        calls before it ran: sending the whole batch again would run those twice and return what
        the second run saw (a record already created looks unchanged, and its change was never
        passed on). So a batch starts with an EVAL, which loads the script for the calls after it;
        when calls meet NOSCRIPT all the same (Redis forgot it mid-batch), they are sent again from
        the first of them. A call that ran after one that did not (forgotten and learnt again within
        one batch) leaves no order to keep: a repeatable script is sent again from the first that
        did not run; any other raises NoScriptError, and its caller's job is retried."""
        if not calls:
            return []
        lane = _lane(r)
        replies: list[Any] = []
        todo = list(calls)
        for attempt in range(3):
            got = lane.send(self._pack(todo, load=attempt > 0 or len(todo) > 1), len(todo), self.repeatable)
            missed = [i for i, reply in enumerate(got) if isinstance(reply, redis.exceptions.NoScriptError)]
            if not missed:
                return _raised(replies + got)
            first = missed[0]
            if not self.repeatable and len(missed) != len(got) - first:
                ran = len(got) - first - len(missed)
                raise redis.exceptions.NoScriptError(
                    f"Redis forgot and learnt script {self.sha[:12]} within one batch: {ran} call(s) ran after "
                    f"one that did not, and the batch cannot be completed in order"
                )
            replies += got[:first]
            todo = todo[first:]
        raise redis.exceptions.NoScriptError(f"Redis forgot script {self.sha[:12]} three times in a row")

    def _pack(self, calls: Sequence[tuple[Sequence[Arg], Sequence[Arg]]], *, load: bool) -> bytes:
        """EVALSHA each call; the first as an EVAL (the script's text) when ``load``."""
        keys, args = calls[0]
        head = ("EVAL", self.text) if load else ("EVALSHA", self.sha)
        packed = [hiredis.pack_command((*head, len(keys), *keys, *args))]
        packed += [hiredis.pack_command(("EVALSHA", self.sha, len(k), *k, *a)) for k, a in calls[1:]]
        return b"".join(packed)


def pipeline(r: redis.Redis, commands: Sequence[Sequence[Arg]]) -> list[Any]:
    """Plain commands in one round trip (not atomic), raw replies in order: bytes, ints, lists, and
    for a hash a dict (RESP3) or a flat list (RESP2). For the hot paths that send many at once."""
    if not commands:
        return []
    payload = b"".join(hiredis.pack_command(tuple(c)) for c in commands)
    return _raised(_lane(r).send(payload, len(commands), False))


def _raised(replies: list[Any]) -> list[Any]:
    """The replies, once none is an error (else the first error is raised)."""
    for reply in replies:
        if isinstance(reply, redis.exceptions.ResponseError):
            raise reply
    return replies


def transaction(pipe: redis.client.Pipeline) -> None:
    """Send the commands queued on a redis-py pipeline as one MULTI/EXEC, in one round trip, for
    callers that ignore the replies (rq's job bookkeeping, the sync's enqueues): redis-py's own
    ``execute()`` costs more CPU per command than Redis spends on it. A failed command is raised."""
    stack = pipe.command_stack
    if not stack:
        return
    replies = pipeline(pipe, [("MULTI",), *(args for args, _ in stack), ("EXEC",)])
    pipe.reset()
    _raised(replies[-1] or [])  # EXEC's replies: a command that failed inside the transaction


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
        """Send packed commands and read their ``replies``, an error reply in its place (the
        connection stays in step). A connection that broke is replaced and the batch sent once
        more when the broken one was an idle one (Redis restarted or dropped it meanwhile: what
        was sent never ran, as redis-py assumes too) or when the batch is ``repeatable``."""
        for attempt in (1, 2):
            conn, reused = self._take()
            out: list[Any] = []
            try:
                conn.send_packed_command([payload])
                for _ in range(replies):
                    try:
                        out.append(conn.read_response())
                    except redis.exceptions.ResponseError as exc:
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
