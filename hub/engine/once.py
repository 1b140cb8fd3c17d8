"""Exactly-once execution of one action, keyed by (rule, record, occurrence, step).

``done`` keys make a retried or duplicated job skip what already happened; a short ``running``
lease stops two workers from performing the same action at once. The crash window left (a worker
killed after the vendor accepted the call, before ``done`` was written) is closed by each action
carrying the same key to the vendor where it can be checked: HubSpot objects are upserted on a
``hub_action_key`` property, Mailchimp events are looked up by it, outbound webhooks reuse it as
``webhook-id``.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable
from typing import Any

import redis

from hub import fastjson, ids, scripts
from hub.errors import TransientError

DONE_TTL = 35 * 86400
LEASE_MS = 120_000


def action_key(rule_id: str, occurrence: str, step: str) -> str:
    return hashlib.sha256(f"{rule_id}\x1f{occurrence}\x1f{step}".encode()).hexdigest()[:32]


def done_key(key: str) -> str:
    """Where an action's lease and then its ``done:<result>`` marker live. An action that is one
    write of the hub's record state writes the marker in that same script instead (no lease)."""
    return f"hub:act:{key}"


_HOST = socket.gethostname()
_STEAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""


def _holder_dead(token: bytes) -> bool:
    """A lease reads ``run:<host>:<pid>:<random id>``: on this host a gone PID means a dead holder."""
    parts = token.decode(errors="replace").split(":")
    if len(parts) != 4 or parts[1] != _HOST:
        return False
    try:
        os.kill(int(parts[2]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


def run_once(conn: redis.Redis, key: str, fn: Callable[[], dict[str, Any] | None]) -> tuple[str, Any]:
    """Run ``fn`` unless it already ran for ``key``. Returns ("done" | "already", result)."""
    name = done_key(key)
    token = f"run:{_HOST}:{ids.pid()}:{ids.new_id()}"
    if not scripts.pipeline(conn, [("SET", name, token, "NX", "PX", LEASE_MS)])[0]:
        raw = conn.get(name)
        if raw is not None and raw.startswith(b"done:"):
            return "already", fastjson.loads(raw[5:])
        took = False
        if raw is None:  # the holder gave up in between: try once more
            took = bool(conn.set(name, token, nx=True, px=LEASE_MS))
        elif _holder_dead(raw):  # a worker killed mid-action left its lease: take it over at once
            took = bool(conn.eval(_STEAL, 1, name, raw, token, LEASE_MS))
        if not took:
            ttl = conn.pttl(name)
            raise TransientError("the same action is running on another worker", retry_after=max(ttl, 1000) / 1000)
    try:
        result = fn() or {}
    except BaseException:
        # Not done: let a retry run it again (only if the lease is still ours).
        if conn.get(name) == token.encode():
            conn.delete(name)
        raise
    scripts.pipeline(conn, [("SET", name, b"done:" + fastjson.dumps(result, default=str), "EX", DONE_TTL)])
    return "done", result
