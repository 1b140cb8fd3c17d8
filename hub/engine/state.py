"""Per-record bookkeeping in Redis: what the hub last agreed each field is, never the data itself.

For each record (entity + key) a hash holds, per field, a fingerprint of the agreed value followed
by the source time it was set (one hash field: Redis's HSET cost grows with the number of fields
of the record), and per system the fingerprint of the value that system last had (so a
value still waiting for propagation is not mistaken for an edit there); the record's id in each
system; a version. Values themselves are kept only
for fields whose *previous* value a rule asks about (``changed: ... from:``).

Applying what a system reports is one Lua script: fields whose fingerprint differs are changes
(accepted or refused by ownership and time), and the result is pushed to the running job's
*outbox* in the same atomic step — so a worker killed right after can never lose a change it
already recorded: the retried job drains the outbox first.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from hub import fastjson, ids, scripts
from hub.engine.once import DONE_TTL
from hub.errors import TransientError
from hub.mapping.values import to_json
from hub.scripts import Script

STATE_TTL = 400 * 86400  # a record untouched for this long is forgotten (re-seen as new)
OUTBOX_TTL = 7 * 86400


try:  # CPython's own SHA-1: the same digest, without OpenSSL's per-call set-up (~0.3 µs of ~1)
    from _sha1 import sha1 as _sha1  # type: ignore[import-not-found]  # CPython has no stub for it
except ImportError:  # a build without it
    _sha1 = hashlib.sha1


FP_LEN = 16  # hex digits of a fingerprint; an agreed value's `f:` field is followed by its source time


def _digest(data: bytes) -> str:
    return _sha1(data).hexdigest()[:FP_LEN]


_NULL, _TRUE, _FALSE = _digest(b"null"), _digest(b"true"), _digest(b"false")


def fingerprint(value: Any) -> str:
    """A short digest of a canonical value (Redis keeps digests, never values): of ``"`` + the text
    for text (dates as ISO text), else of the value's compact JSON with sorted keys. Called for
    every field of every record read, so the common scalars take a short way to the same digest."""
    kind = type(value)
    if kind is str:
        return _digest(('"' + value).encode())
    if value is None:
        return _NULL
    if kind is bool:
        return _TRUE if value else _FALSE
    if kind is int:  # an int's JSON is its decimal text
        return _digest(str(value).encode())
    if kind is float:  # as to_json gives it: a whole number as an int
        if value.is_integer() and abs(value) < 2**53:
            return _digest(str(int(value)).encode())
        return _digest(orjson.dumps(value))
    plain = value if isinstance(value, (str, bool, int)) else to_json(value)
    if isinstance(plain, str):  # dates included, as ISO text, without a JSON round trip
        return _digest(('"' + plain).encode())
    return _digest(fastjson.dumps(plain, sort_keys=True))


def state_key(entity: str, key: str) -> str:
    return f"hub:r:{entity}:{key}"


def index_key(system: str, coll: str, record_id: str) -> str:
    return f"hub:x:{system}:{coll}:{record_id}"


_APPLY = """
local ts = tonumber(ARGV[3])
local sys = ARGV[1]
local all_hub = sys == 'hub'
-- KEYS[4], when set, is the done marker of the rule action that makes this write (see once.py):
-- written with it, so the action happens once without a lease; found, nothing is written again.
if KEYS[4] ~= '' and redis.call('EXISTS', KEYS[4]) == 1 then return '{"already":true}' end
-- Fields come flat from ARGV[9] on: name, fingerprint, mode, tracked value ('' when not tracked).
-- Mode `hub`: a value the hub computed (every field of a call made by the hub itself), owned by
-- the hub and not something `sys` reported. The same field may come twice, as `sys` reported it
-- (refused: `deny:hub`, which writes no agreed value) and as the hub computed it.
-- Read everything this record needs in one HMGET: per field what `sys` last had (not for the
-- hub's own values), the agreed fingerprint followed by its source time (`f:`), and the value
-- (tracked fields only); then the version.
-- pos[i] is where field i's `f:` lands in the reply; what `sys` had is just before it, its value
-- just after it, when read.
local names, pos, n = {}, {}, 0
local prefix = 's:' .. sys .. ':'
for i = 9, #ARGV, 4 do
  local name = ARGV[i]
  if not all_hub and ARGV[i + 2] ~= 'hub' then n = n + 1; names[n] = prefix .. name end
  n = n + 1; names[n] = 'f:' .. name; pos[i] = n
  if ARGV[i + 3] ~= '' then n = n + 1; names[n] = 'v:' .. name end
end
names[n + 1] = 'ver'
local got = redis.call('HMGET', KEYS[1], unpack(names))
local existed = got[n + 1] ~= false
local changed, conflicts, writes = {}, {}, {}
for i = 9, #ARGV, 4 do
  local name, fp, mode, tracked = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local f = pos[i]
  local cur = got[f]  -- the agreed fingerprint (FP_LEN characters), then its source time
  local hub = all_hub or mode == 'hub'
  -- A system changed a field only if its value differs from what that system last had:
  -- a stale value waiting for propagation is not a change.
  if hub or got[f - 1] ~= fp then
    if not hub then
      writes[#writes + 1] = prefix .. name
      writes[#writes + 1] = fp
    end
    -- A plain search from the first character: a prefix test that makes no new Lua string.
    if not cur or string.find(cur, fp, 1, true) ~= 1 then
      local accept, reason = false, ''
      if not cur or hub or mode == 'own' then
        accept = true
      elseif mode == 'shared' then
        if ts >= (tonumber(string.sub(cur, #fp + 1)) or 0) then accept = true else reason = 'older' end
      else
        reason = mode
      end
      if accept then
        local prev = ''
        if tracked ~= '' then
          prev = got[f + 1] or ''
          writes[#writes + 1] = 'v:' .. name
          writes[#writes + 1] = tracked
        end
        writes[#writes + 1] = 'f:' .. name
        writes[#writes + 1] = fp .. ARGV[3]  -- the time as sent: a Lua number would cost an sprintf
        table.insert(changed, {name, prev, cur ~= false})
      else
        table.insert(conflicts, {name, reason})
      end
    end
  end
end
if ARGV[2] ~= '' then
  writes[#writes + 1] = 'id:' .. sys
  writes[#writes + 1] = ARGV[2]
  redis.call('SET', KEYS[2], ARGV[6], 'EX', ARGV[7])
end
local ver = tonumber(got[n + 1] or '0')
if #changed > 0 or not existed then
  ver = ver + 1
  writes[#writes + 1] = 'ver'
  writes[#writes + 1] = ver
end
if #writes > 0 then
  redis.call('HSET', KEYS[1], unpack(writes))
end
redis.call('EXPIRE', KEYS[1], ARGV[7])
local result = cjson.encode({created = not existed, version = ver, changed = changed, conflicts = conflicts})
if KEYS[3] ~= '' and (#changed > 0 or #conflicts > 0 or not existed) then
  -- The item is JSON already: spliced in as is, not decoded and encoded again.
  if redis.call('RPUSH', KEYS[3], '{"item":' .. ARGV[5] .. ',"result":' .. result .. '}') == 1 then
    redis.call('EXPIRE', KEYS[3], ARGV[4])
  end
end
if KEYS[4] ~= '' then redis.call('SET', KEYS[4], 'done:{}', 'EX', ARGV[8]) end
return result
"""

_DELETE = """
local key = redis.call('GET', KEYS[2])
if not key then return '' end
redis.call('DEL', KEYS[2])
redis.call('HDEL', KEYS[3], 'id:' .. ARGV[1])
local ver = redis.call('HINCRBY', KEYS[3], 'ver', 1)
local item = cjson.decode(ARGV[2])
item['key'] = key
if KEYS[1] ~= '' then
  redis.call('RPUSH', KEYS[1], cjson.encode({item = item, result = {deleted = true, version = ver}}))
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return key
"""

_LOCK_ALL = """
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then return 0 end
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
end
return 1
"""

_UNLOCK_ALL = """
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 1
"""


@dataclass
class FieldObs:
    """One field as a system reports it."""

    name: str
    value: Any
    mode: str  # own | shared | deny:<owner> | hub (computed by the hub, whatever system reported the record)
    tracked: bool = False


@dataclass
class Applied:
    created: bool
    version: int
    changed: list[tuple[str, Any, bool]] = field(default_factory=list)  # (field, old value if tracked, had a value)
    conflicts: list[tuple[str, str]] = field(default_factory=list)
    already: bool = False  # the write's done marker was there: the action made it before, nothing was written


def _apply_call(
    entity: str,
    key: str,
    system: str,
    coll_id: str,
    record_id: str,
    source_ms: int,
    fields: Sequence[FieldObs],
    *,
    outbox: str = "",
    item: dict[str, Any] | None = None,
    done: str = "",
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of one _APPLY: the record's arguments, then four per field."""
    keys = [state_key(entity, key), index_key(system, coll_id, record_id), outbox, done]
    args: list[Any] = [system, record_id, source_ms, OUTBOX_TTL, orjson.dumps(item or {}), key, STATE_TTL, DONE_TTL]
    for f in fields:
        args += (f.name, fingerprint(f.value), f.mode, orjson.dumps(to_json(f.value)) if f.tracked else "")
    return keys, args


def _decode_applied(raw: dict[str, Any]) -> Applied:
    if raw.get("already"):
        return Applied(False, 0, already=True)
    changed = []
    for name, old, had in raw.get("changed") or []:
        changed.append((name, orjson.loads(old) if old else None, bool(had)))
    conflicts = [(n, r) for n, r in (raw.get("conflicts") or [])]
    return Applied(bool(raw.get("created")), int(raw.get("version") or 0), changed, conflicts)


_APPLY_SCRIPT = Script(_APPLY)
_DELETE_SCRIPT = Script(_DELETE)
_LOCK_ALL_SCRIPT = Script(_LOCK_ALL, repeatable=True)  # a repeat finds its own locks taken and waits them out
_UNLOCK_ALL_SCRIPT = Script(_UNLOCK_ALL, repeatable=True)


class RecordState:
    """The Redis side of sync for one process."""

    def __init__(self, conn: redis.Redis) -> None:
        self.conn = conn

    def apply(
        self,
        entity: str,
        key: str,
        system: str,
        coll_id: str,
        record_id: str,
        source_ms: int,
        fields: Sequence[FieldObs],
        *,
        outbox: str = "",
        item: dict[str, Any] | None = None,
        done: str = "",
    ) -> Applied:
        """Apply one system's view of a record (see the module docstring); ``done``: the marker of
        the rule action making this write, which makes it once (see :mod:`hub.engine.once`)."""
        call = _apply_call(
            entity, key, system, coll_id, record_id, source_ms, fields, outbox=outbox, item=item, done=done
        )
        return _decode_applied(orjson.loads(_APPLY_SCRIPT(self.conn, *call)))

    def apply_many(
        self, calls: Sequence[dict[str, Any]], *, logged: list[dict[str, Any]] | None = None
    ) -> list[Applied]:
        """Several :meth:`apply` calls (keyword arguments each) in one round trip, in order.

        ``logged`` receives each entry the calls pushed to their outbox, as the outbox
        holds it: the job that made them drains them from memory instead of reading them back."""
        replies = _APPLY_SCRIPT.many(self.conn, [_apply_call(**call) for call in calls])
        out = []
        for call, raw in zip(calls, replies, strict=True):
            result = orjson.loads(raw)
            # The script's own test: an empty Lua table comes back as {} (falsy), a list otherwise.
            if (
                logged is not None
                and call.get("outbox")
                and (result.get("changed") or result.get("conflicts") or result.get("created"))
            ):
                logged.append({"item": call.get("item") or {}, "result": result})
            out.append(_decode_applied(result))
        return out

    def agreed(
        self, entity: str, fields: Mapping[str, Collection[str]], system: str
    ) -> dict[str, tuple[dict[str, str | None], str | None]]:
        """Per record key, in one round trip: the agreed fingerprints of the given fields, and the
        record's id in ``system`` (None where it has none yet)."""
        commands = [
            ("HMGET", state_key(entity, key), f"id:{system}", *(f"f:{n}" for n in names))
            for key, names in fields.items()
        ]
        out = {}
        for (key, names), got in zip(fields.items(), scripts.pipeline(self.conn, commands), strict=True):
            fps = {n: fp[:FP_LEN].decode() if fp is not None else None for n, fp in zip(names, got[1:], strict=True)}
            out[key] = (fps, got[0].decode() if got[0] is not None else None)
        return out

    def written_many(
        self,
        entity: str,
        writes: Sequence[tuple[str, str, dict[str, str]]],
        *,
        links: Sequence[tuple[str, str, str, str]] = (),
    ) -> None:
        """:meth:`written` for many records at once: (key, system, fingerprints). ``links``: (key,
        system, coll_id, record_id) of records the hub just created in a system, whose id is kept
        in the same round trip (as :meth:`apply` keeps one, without a field change or an event)."""
        fields: dict[str, list[str]] = {}
        for key, system, fps in writes:
            fields.setdefault(key, []).extend(part for n, fp in fps.items() for part in (f"s:{system}:{n}", fp))
        commands: list[tuple[Any, ...]] = []
        for key, system, coll_id, record_id in links:
            fields.setdefault(key, []).extend((f"id:{system}", record_id))
            commands.append(("SET", index_key(system, coll_id, record_id), key, "EX", STATE_TTL))
            commands.append(("EXPIRE", state_key(entity, key), STATE_TTL))
        commands += [("HSET", state_key(entity, key), *flat) for key, flat in fields.items() if flat]
        scripts.pipeline(self.conn, commands)

    def delete(
        self,
        entity: str,
        system: str,
        coll_id: str,
        record_id: str,
        *,
        outbox: str = "",
        item: dict[str, Any] | None = None,
    ) -> str | None:
        """Forget the system's record; returns the record key it had (None if never seen)."""
        idx = index_key(system, coll_id, record_id)
        key = self.conn.get(idx)
        if key is None:
            return None
        skey = state_key(entity, key.decode())
        out = _DELETE_SCRIPT(self.conn, [outbox, idx, skey], [system, orjson.dumps(item or {}), OUTBOX_TTL])
        return out.decode() if out else None

    def ids(self, entity: str, key: str) -> dict[str, str]:
        raw = self.conn.hgetall(state_key(entity, key))
        return {k.decode()[3:]: v.decode() for k, v in raw.items() if k.startswith(b"id:")}

    def key_for(self, system: str, coll_id: str, record_id: str) -> str | None:
        raw = self.conn.get(index_key(system, coll_id, record_id))
        return raw.decode() if raw else None

    def fingerprints(self, entity: str, key: str, names: Sequence[str]) -> dict[str, str | None]:
        if not names:
            return {}
        raw = self.conn.hmget(state_key(entity, key), [f"f:{n}" for n in names])
        return {n: (v[:FP_LEN].decode() if v else None) for n, v in zip(names, raw, strict=True)}

    def written(self, entity: str, key: str, system: str, fingerprints: dict[str, str]) -> None:
        """Remember what the hub just wrote to ``system``: its echo is then no change."""
        self.written_many(entity, [(key, system, fingerprints)])

    # -- locks ----------------------------------------------------------------------------------
    @contextmanager
    def locked(self, names: Sequence[str], *, ttl_ms: int = 30000, wait: float = 20.0) -> Iterator[None]:
        """Hold the record locks ``names``: all taken in one step or none (so two batches that share
        records cannot deadlock, and a batch costs two round trips, not two per record)."""
        token = ids.new_id()
        keys = [f"hub:lock:{n}" for n in sorted(set(names))]
        if not keys:
            yield
            return
        deadline = time.monotonic() + wait
        delay = 0.002
        while not _LOCK_ALL_SCRIPT(self.conn, keys, [token, ttl_ms]):
            if time.monotonic() > deadline:
                raise TransientError(f"{len(keys)} record(s) locked by another worker", retry_after=1)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        try:
            yield
        finally:
            _UNLOCK_ALL_SCRIPT(self.conn, keys, [token])

    # -- outbox ---------------------------------------------------------------------------------
    def outbox(self, name: str) -> list[dict[str, Any]]:
        """The entries of outbox ``name`` (none when it is absent: Redis drops an emptied list)."""
        return [orjson.loads(x) for x in scripts.pipeline(self.conn, [("LRANGE", name, 0, -1)])[0]]
