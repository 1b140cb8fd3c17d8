"""What every webhook endpoint shares: body limits, content types, de-duplication and enqueueing.

A provider blueprint verifies and parses its request, then calls :func:`accept` with normalised
events and a de-duplication key per event. ``accept`` drops the events already seen (Redis
sets, kept longer than any provider's retry window), and enqueues the rest as ONE job for the
whole request, in one round trip to Redis — never a SaaS call in the request path.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from flask import Response, current_app, jsonify, request

from hub import jobs
from hub.scripts import Script

log = logging.getLogger("hub.webhooks")

DEDUPE_DAYS = 2  # HubSpot retries for 24 h, Airtable/Mailchimp less: a key is found for 2 to 4 days
DEDUPE_TTL = (2 * DEDUPE_DAYS + 1) * 86400  # a set outlives the last lookup that reads it
MAX_BODY = 1024 * 1024  # vendors send small batches; anything bigger is not a webhook
BATCH_JOB = "hub.engine.intake.handle_events"


class Reject(Exception):
    """Answer the request with ``status`` and a JSON error naming the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Accepted:
    received: int
    enqueued: int
    duplicates: int
    job_id: str | None


def error(status: int, message: str) -> Response:
    resp = jsonify({"error": message, "status": status})
    resp.status_code = status
    return resp


def body(max_bytes: int = MAX_BODY) -> bytes:
    """The raw body (signatures are computed over the exact bytes), within the size limit."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise Reject(413, f"body too large: {length} bytes (limit {max_bytes})")
    data = request.get_data(cache=True)
    if len(data) > max_bytes:
        raise Reject(413, f"body too large: {len(data)} bytes (limit {max_bytes})")
    return data


def require_content_type(*allowed: str) -> None:
    mime = (request.mimetype or "").lower()
    if mime not in allowed:
        raise Reject(415, f"unsupported content type {mime or 'none'!r}; expected {' or '.join(allowed)}")


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if raw[exc.pos : exc.pos + 9].lstrip(b"-").startswith((b"NaN", b"Infinity")):
            raise Reject(400, f"malformed JSON: NaN and Infinity are not JSON values (char {exc.pos})") from None
        raise Reject(400, f"malformed JSON: {exc}") from None


def conn() -> redis.Redis:
    return current_app.extensions["hub.redis"]  # type: ignore[no-any-return]


def dedupe_key(provider: str, parts: Sequence[Any]) -> str:
    """The key under which an event counts as seen: its provider and a digest of what identifies it
    (a digest: the parts may hold personal data, e.g. a Mailchimp email)."""
    text = parts[0] if len(parts) == 1 and type(parts[0]) is str else "\x1f".join(map(str, parts))
    return provider + ":" + hashlib.sha1(text.encode()).hexdigest()[:24]


def seen_buckets(now: float | None = None) -> list[str]:
    """The sets a key is looked up in, the current one first (where new keys go). Each covers
    ``DEDUPE_DAYS`` days: with the one before, a key is found for that long at least."""
    span = DEDUPE_DAYS * 86400
    period = int((time.time() if now is None else now) // span)
    return [f"hub:seen:{period}", f"hub:seen:{period - 1}"]


# One round trip per request: look every key up in the seen sets; when none was seen, add them to
# the current set and write and queue the job (the hash rq's Job.to_dict() makes, see JobTemplate) in
# the same script. Otherwise write nothing and say which were seen: accept_on() retries with the
# fresh ones, so no claim is ever held by a request that may die before its job is queued.
# Sets of two days, not a key per event: a SET with a TTL per event costs Redis ten times more.
_SCRIPT = """
local nb, n = tonumber(ARGV[1]), tonumber(ARGV[3])
local seen = {}
for b = 1, nb do
  local hits = redis.call('SMISMEMBER', KEYS[b], unpack(ARGV, 4, 3 + n))
  for i = 1, n do
    if hits[i] == 1 then seen[#seen + 1] = i end
  end
end
if #seen > 0 then
  return seen
end
redis.call('SADD', KEYS[1], unpack(ARGV, 4, 3 + n))
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[nb + 1], unpack(ARGV, 4 + n))
redis.call('RPUSH', KEYS[nb + 2], KEYS[nb + 4])
redis.call('SADD', KEYS[nb + 3], KEYS[nb + 2])
return -1
"""
_ACCEPT = Script(_SCRIPT, repeatable=True)  # a repeat finds its own keys seen and writes nothing


def _try_accept(
    r: redis.Redis, tpl: jobs.JobTemplate, provider: str, events: list[dict[str, Any]], keys: list[str],
    extra: dict[str, Any],
) -> tuple[str | None, set[int]]:  # fmt: skip
    """Queue ``events`` as one job unless some key was seen: (job id, set()) or (None, seen indexes)."""
    job_id, fields = tpl.variable((provider, events), extra)
    buckets = seen_buckets()
    job_key = tpl.key_for(job_id)
    args: list[Any] = [len(buckets), DEDUPE_TTL, len(keys), *keys]
    for name, value in tpl.constant.items():
        args += (name, value)
    for name, value in fields.items():
        args += (name, value)
    # The job id rides as the last KEY (RPUSH pushes it) so ARGV stays keys then fields.
    script_keys = [*buckets, job_key, tpl.queue_key, tpl.queues_key, job_id]
    out = _ACCEPT(r, script_keys, args)
    if out == -1:
        return job_id, set()
    return None, {int(i) - 1 for i in out}


def accept_on(
    r: redis.Redis,
    provider: str,
    events: Sequence[dict[str, Any]],
    keys: Sequence[str],
    *,
    job: str = BATCH_JOB,
    queue_name: str = jobs.QUEUE_HIGH,
    extra: dict[str, Any] | None = None,
) -> Accepted:
    """Mark ``events`` seen (by ``keys``), enqueue the new ones as one job, and say what happened.
    Needs no Flask app: the Firestore listener calls it from its own process."""
    if len(events) != len(keys):
        raise ValueError("one de-duplication key per event")
    tpl = jobs.template(r, job, queue_name)
    todo = list(range(len(keys)))
    if len(set(keys)) < len(keys):  # the same event twice in one delivery: its first copy counts
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        todo = sorted(first.values())
    # Each round either queues the job or drops at least one key another delivery got first.
    while todo:
        job_id, seen = _try_accept(r, tpl, provider, [events[i] for i in todo], [keys[i] for i in todo], extra or {})
        if job_id is not None:
            break
        todo = [i for n, i in enumerate(todo) if n not in seen]
    else:
        job_id = None
    dupes = len(events) - len(todo)
    if dupes:
        log.info("%s: %d duplicate event(s) acknowledged and dropped", provider, dupes)
    return Accepted(len(events), len(todo), dupes, job_id)


def accept(
    provider: str,
    events: Sequence[dict[str, Any]],
    keys: Sequence[str],
    *,
    job: str = BATCH_JOB,
    queue_name: str = jobs.QUEUE_HIGH,
    extra: dict[str, Any] | None = None,
) -> Accepted:
    """:func:`accept_on` the app's Redis (inside a request)."""
    return accept_on(conn(), provider, events, keys, job=job, queue_name=queue_name, extra=extra)


def answer(result: Accepted, status: int = 200) -> Response:
    body = orjson.dumps(
        {"received": result.received, "enqueued": result.enqueued, "duplicates": result.duplicates,
         "job": result.job_id}
    )  # fmt: skip
    return Response(body, status=status, mimetype="application/json")


def guarded(view: Callable[..., Response]) -> Callable[..., Response]:
    """Turn :class:`Reject` into its 4xx answer, and a Redis outage into a 503 (the provider retries)."""

    def wrapper(*args: Any, **kwargs: Any) -> Response:
        try:
            return view(*args, **kwargs)
        except Reject as exc:
            route = request.url_rule.rule if request.url_rule else "?"  # never the path: it may hold a secret
            log.info("%s %s rejected: %d %s", request.method, route, exc.status, exc.message)
            return error(exc.status, exc.message)
        except redis.RedisError as exc:
            route = request.url_rule.rule if request.url_rule else "?"
            log.error("%s %s: queue unavailable: %s", request.method, route, exc)
            return error(503, "queue unavailable, retry later")

    wrapper.__name__ = view.__name__
    wrapper.__doc__ = view.__doc__
    return wrapper
