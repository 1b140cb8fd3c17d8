"""RQ plumbing: queues, the JSON serializer, enqueueing with JSON-only arguments, and the error
policy every hub job follows.

- transient errors (:class:`TransientError`) are retried by rq with backoff, at least the
  server's Retry-After;
- permanent and config errors are not retried: the job lands in the failed registry with a
  readable ``reason`` in its meta (and the exception text), retryable by hand (`hub failed`);
- a worker killed mid-job leaves the job "abandoned"; rq's registry cleanup retries it.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import pickle
from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar

import redis
from rq import Queue, Retry, get_current_job
from rq.exceptions import DuplicateJobError
from rq.job import Job, JobStatus

from hub import fastjson, ids
from hub.errors import ConfigError, HubError, PermanentError, TransientError

log = logging.getLogger("hub.jobs")

QUEUE_HIGH = "hub-high"  # webhook intake batches: small, latency matters
QUEUE_DEFAULT = "hub"  # rules, waits, retries
QUEUE_LOW = "hub-low"  # scans, backfills, provisioning
QUEUES = (QUEUE_HIGH, QUEUE_DEFAULT, QUEUE_LOW)

RETRY_INTERVALS = [2, 10, 30, 120, 600, 1800]
DEFAULT_TIMEOUT = 600
F = TypeVar("F", bound=Callable[..., Any])


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a job payload")


class HubSerializer:
    """JSON for everything the hub writes. Reads JSON, and — only because ``rq cron`` enqueues
    with rq's default pickle serializer — pickles made of plain values (no classes, no code)."""

    @staticmethod
    def dumps(obj: Any) -> bytes:
        return fastjson.dumps(obj)

    @staticmethod
    def loads(data: bytes | str) -> Any:
        raw = data.encode("utf-8") if isinstance(data, str) else data
        if raw[:1] == b"\x80":
            import io

            return _NoGlobals(io.BytesIO(raw)).load()
        return fastjson.loads(raw)


def connect(url: str) -> redis.Redis:
    """A client for ``REDIS_URL``: TCP (``redis://``, ``rediss://``) or a local unix socket (``unix://``)."""
    tcp = {} if url.startswith("unix:") else {"socket_keepalive": True}  # no keepalive on unix sockets
    return redis.Redis.from_url(url, health_check_interval=30, **tcp)


def queue(conn: redis.Redis, name: str = QUEUE_DEFAULT) -> Queue:
    return Queue(name, connection=conn, serializer=HubSerializer)


def check_json(args: tuple[Any, ...], kwargs: dict[str, Any], what: str) -> None:
    """Job arguments must be plain JSON (dates as ISO strings) so any worker can read them."""
    try:
        json.dumps([args, kwargs], allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"arguments of job {what} must be JSON values: {exc}") from None


def describe(args: tuple[Any, ...]) -> str:
    """Argument shapes for logs: sizes and short names only, never values."""
    parts = []
    for a in args:
        if isinstance(a, list):
            parts.append(f"[{len(a)} item(s)]")
        elif isinstance(a, dict):
            parts.append("{...}")
        elif isinstance(a, str) and len(a) <= 40 and "@" not in a and ":" not in a:
            parts.append(repr(a))
        else:
            parts.append("…")
    return ", ".join(parts)


def enqueue(
    conn: redis.Redis,
    func: Callable[..., Any] | str,
    *args: Any,
    queue_name: str = QUEUE_DEFAULT,
    job_id: str | None = None,
    unique_for: int | None = None,
    at: datetime | None = None,
    at_front: bool = False,
    timeout: int = DEFAULT_TIMEOUT,
    retry_intervals: list[int] | None = None,
    unique: bool = False,
    pipeline: Any = None,
    **kwargs: Any,
) -> Job | None:
    """Enqueue ``func`` (now, or ``at`` a time) with JSON-only arguments and the retry policy.

    With ``job_id`` and ``unique_for`` (seconds), the same id enqueued again within that time
    is a no-op returning None: rq alone would queue the id twice and run it twice. With
    ``unique``, rq refuses atomically while a job of that id exists (also returns None).
    ``pipeline`` puts the enqueue in the caller's transaction.
    """
    name = func if isinstance(func, str) else f"{func.__module__}.{func.__qualname__}"
    check_json(args, kwargs, name)
    if unique_for is not None:
        if job_id is None:
            raise ValueError("unique_for needs a job_id")
        if not conn.set(f"hub:enqueued:{job_id}", 1, nx=True, ex=max(int(unique_for), 1)):
            return None
    intervals = retry_intervals if retry_intervals is not None else RETRY_INTERVALS
    q = queue(conn, queue_name)
    options: dict[str, Any] = {
        # rq logs the description; the default one shows the arguments, which hold personal data.
        "description": f"{name}({describe(args)})",
        "args": args,
        "kwargs": kwargs,
        "job_id": job_id,
        "job_timeout": timeout,
        "retry": Retry(max=len(intervals), interval=intervals) if intervals else None,
        "result_ttl": 3600,
        "failure_ttl": 30 * 86400,
        "pipeline": pipeline,
        "unique": unique,
    }
    try:
        if at is not None:
            return q.enqueue_at(at, name, **options)
        return q.enqueue(name, at_front=at_front, **options)
    except DuplicateJobError:
        return None


def hub_job(fn: F) -> F:
    """Apply the error policy to a job function (see the module docstring)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            # Redis itself is unreachable or restarting: rq retries the job once it is back.
            log.warning("%s: Redis unavailable, will retry: %s", fn.__name__, exc)
            raise
        except TransientError as exc:
            job = get_current_job()
            if job is not None and exc.retry_after:
                # rq reads the interval for this retry from the list: put Retry-After there.
                base = job.retry_intervals or RETRY_INTERVALS
                index = max(len(base) - (job.retries_left or 0), 0)
                intervals = list(base)
                if index < len(intervals):
                    # rq schedules on whole seconds (rounding down): one more keeps it a lower bound.
                    intervals[index] = max(intervals[index], math.ceil(exc.retry_after) + 1)
                job.retry_intervals = intervals
            log.warning("%s: transient failure, will retry: %s", fn.__name__, exc)
            raise
        except (PermanentError, ConfigError, HubError) as exc:
            _no_retry(f"{type(exc).__name__}: {exc}")
            raise
        except Exception as exc:
            # Unknown failures are treated as permanent: visible, retryable by hand.
            _no_retry(f"{type(exc).__name__}: {exc}")
            raise

    return wrapper  # type: ignore[return-value]


def _no_retry(reason: str) -> None:
    job = get_current_job()
    if job is None:
        return
    job.retries_left = 0
    job.meta["reason"] = reason[:2000]
    try:
        job.save_meta()
    except redis.RedisError:
        log.exception("could not record failure reason of job %s", job.id)


class JobTemplate:
    """rq's job hash for one function on one queue with the hub's options, made once by rq itself.

    Enqueueing through rq builds a Job object and serialises it field by field for every job,
    the largest cost of a webhook request. Here rq makes one prototype; each job then changes
    only what differs (id, times, arguments, description) and is written as rq would write it.
    The arguments stay uncompressed: rq reads both (``Job.restore`` falls back to raw data).
    """

    VARIABLE = ("created_at", "enqueued_at", "data", "description")

    def __init__(self, conn: redis.Redis, func: str, queue_name: str = QUEUE_DEFAULT) -> None:
        q = queue(conn, queue_name)
        intervals = RETRY_INTERVALS
        proto = Job.create(func, args=(), kwargs={}, connection=conn, serializer=HubSerializer, origin=q.name,
                           timeout=DEFAULT_TIMEOUT, result_ttl=3600, failure_ttl=30 * 86400,
                           retry=Retry(max=len(intervals), interval=intervals))  # fmt: skip
        proto._status = JobStatus.QUEUED  # as rq's Queue._prepare_for_queue does
        self.func = func
        self.queue_key = q.key
        self.queues_key = q.redis_queues_keys
        # rq writes unset fields as empty strings and reads a missing field the same way: leave them out.
        self.constant = {k: _field(v) for k, v in proto.to_dict().items() if k not in self.VARIABLE and v != ""}

    def variable(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, dict[str, bytes]]:
        """A new job id and the fields that differ per job (the arguments must be JSON values)."""
        try:
            data = fastjson.dumps([self.func, None, args, kwargs])
        except (TypeError, ValueError) as exc:
            raise TypeError(f"arguments of job {self.func} must be JSON values: {exc}") from None
        # rq's utcformat() format; isoformat() is several times cheaper than its strftime().
        stamp = datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds").encode() + b"Z"
        description = f"{self.func}({describe(args)})".encode()
        return ids.new_id(), {"created_at": stamp, "enqueued_at": stamp, "data": data, "description": description}

    @staticmethod
    def key_for(job_id: str) -> str:
        return Job.key_for(job_id)  # type: ignore[no-any-return]

    def queue_on(self, pipe: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """Queue a job on ``pipe`` (a redis-py pipeline) as rq's enqueue would; returns its id."""
        job_id, fields = self.variable(args, kwargs)
        pipe.hset(self.key_for(job_id), mapping={**self.constant, **fields})
        pipe.rpush(self.queue_key, job_id)
        pipe.sadd(self.queues_key, self.queue_key)
        return job_id


_templates: dict[tuple[str, str], JobTemplate] = {}


def template(conn: redis.Redis, func: str, queue_name: str = QUEUE_DEFAULT) -> JobTemplate:
    """The :class:`JobTemplate` of ``func`` on ``queue_name`` (made once per process)."""
    tpl = _templates.get((func, queue_name))
    if tpl is None:
        tpl = _templates[(func, queue_name)] = JobTemplate(conn, func, queue_name)
    return tpl


def push(pipe: Any, conn: redis.Redis, func: str, *args: Any, queue_name: str = QUEUE_DEFAULT, **kwargs: Any) -> str:
    """:func:`enqueue` with the default options, on a pipeline, for the hot paths: one JSON
    encoding of the arguments instead of rq's three passes (check, serialise, compress)."""
    return template(conn, func, queue_name).queue_on(pipe, args, kwargs)


def _field(value: Any) -> bytes:
    """A hash field value as redis-py would send it."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, Enum):
        value = value.value
    return str(value).encode()
