"""What every webhook endpoint shares: body limits, content types, de-duplication and enqueueing.

A provider blueprint verifies and parses its request, then calls :func:`accept` with normalised
events and a de-duplication key per event. ``accept`` drops the events already seen (Redis,
``SET NX`` with a retention longer than any provider's retry window), and enqueues the rest as
ONE job for the whole request — never a SaaS call in the request path.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from flask import Response, current_app, jsonify, request
from rq import Queue, Retry
from rq.job import Job, JobStatus
from rq.utils import now as rq_now

from hub import jobs

log = logging.getLogger("hub.webhooks")

DEDUPE_TTL = 3 * 86400  # HubSpot retries for 24 h, Airtable/Mailchimp less: keep keys 3 days
PENDING_TTL = 60  # until the job is safely queued: a crash in between must not eat the retry
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
        return json.loads(raw)
    except ValueError as exc:
        raise Reject(400, f"malformed JSON: {exc}") from None


def conn() -> redis.Redis:
    return current_app.extensions["hub.redis"]  # type: ignore[no-any-return]


def dedupe_key(provider: str, parts: Sequence[Any]) -> str:
    digest = hashlib.sha1("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:24]
    return f"hub:seen:{provider}:{digest}"


# The usual request (no duplicate) in ONE round trip: claim every key and, when all were fresh,
# store the job hash exactly as rq's Job.to_dict() made it and queue it, in the same script.
# Otherwise the fresh keys stay claimed briefly and accept_on() falls back to the two-step path.
_ACCEPT_ENQUEUE = """
local n = tonumber(ARGV[1])
local fresh = {}
for i = 1, n do
  if redis.call('SET', KEYS[i], 1, 'NX', 'EX', ARGV[3]) then
    fresh[#fresh + 1] = i
  end
end
if #fresh < n then
  return fresh
end
for i = 1, n do
  redis.call('EXPIRE', KEYS[i], ARGV[2])
end
redis.call('HSET', KEYS[n + 1], unpack(ARGV, 5))
redis.call('RPUSH', KEYS[n + 2], ARGV[4])
redis.call('SADD', KEYS[n + 3], KEYS[n + 2])
return -1
"""
_ACCEPT_SHA = hashlib.sha1(_ACCEPT_ENQUEUE.encode()).hexdigest()


def _ready_job(
    r: redis.Redis, q: Queue, job: str, provider: str, events: Sequence[dict[str, Any]], extra: dict[str, Any]
) -> Job:
    """The job :func:`hub.jobs.enqueue` would store (same options), marked queued, not yet written."""
    args = (provider, list(events))
    jobs.check_json(args, extra, job)
    intervals = jobs.RETRY_INTERVALS
    rq_job = Job.create(
        job,
        args=args,
        kwargs=extra,
        connection=r,
        serializer=jobs.HubSerializer,
        origin=q.name,
        description=f"{job}({provider!r}, [{len(events)} item(s)])",
        timeout=jobs.DEFAULT_TIMEOUT,
        result_ttl=3600,
        failure_ttl=30 * 86400,
        retry=Retry(max=len(intervals), interval=intervals),
    )
    rq_job.enqueued_at = rq_now()
    rq_job._status = JobStatus.QUEUED  # as rq's Queue._prepare_for_queue does; stored by the HSET
    return rq_job


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
    if not keys:
        return Accepted(0, 0, 0, None)
    q = jobs.queue(r, queue_name)
    ready = _ready_job(r, q, job, provider, events, extra or {})
    fields = [item for pair in ready.to_dict().items() for item in pair]
    script_keys = [*keys, ready.key, q.key, q.redis_queues_keys]
    script_args = [len(keys), DEDUPE_TTL, PENDING_TTL, ready.id, *fields]
    # EVALSHA directly: redis-py's Script wrapper costs an isinstance() against a typing Protocol per
    # call, a visible share of a request here; load the script once if Redis does not know it.
    try:
        out = r.evalsha(_ACCEPT_SHA, len(script_keys), *script_keys, *script_args)
    except redis.exceptions.NoScriptError:
        r.script_load(_ACCEPT_ENQUEUE)
        out = r.evalsha(_ACCEPT_SHA, len(script_keys), *script_keys, *script_args)
    if out == -1:
        return Accepted(len(events), len(events), 0, ready.id)
    # Some were duplicates: queue the fresh ones and make their claims last, in one transaction.
    fresh_idx = [int(i) - 1 for i in out]
    fresh = [events[i] for i in fresh_idx]
    job_id = None
    if fresh:
        try:
            with r.pipeline(transaction=True) as pipe:
                pipe.multi()  # rq's enqueue(pipeline=...) expects the transaction open
                queued = jobs.enqueue(r, job, provider, fresh, **(extra or {}), queue_name=queue_name, pipeline=pipe)
                for i in fresh_idx:
                    pipe.expire(keys[i], DEDUPE_TTL)
                pipe.execute()
        except Exception:
            # The job did not make it into the queue: forget the claims so the provider's retry is accepted.
            r.delete(*[keys[i] for i in fresh_idx])
            raise
        job_id = queued.id if queued is not None else None
    dupes = len(events) - len(fresh)
    if dupes:
        log.info("%s: %d duplicate event(s) acknowledged and dropped", provider, dupes)
    return Accepted(len(events), len(fresh), dupes, job_id)


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
    body = json.dumps(
        {
            "received": result.received,
            "enqueued": result.enqueued,
            "duplicates": result.duplicates,
            "job": result.job_id,
        }
    )
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
