"""How the Firestore connector reads google.api_core failures, and how it turns the SDK's own
retries off so the hub's (:mod:`connectors.retry`) are the only ones, and bounded."""

from __future__ import annotations

import re

import grpc
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry

from hub.errors import HubError, PermanentError, RateLimited, TransientError

SYSTEM = "firestore"

# A Retry whose predicate refuses everything: the SDK makes exactly one attempt. (``retry=None``
# would too, but Query.stream then fails on a mid-stream error: it reads ``retry._predicate``.)
# Left at its default, the google client retries UNAVAILABLE for up to 300 s by itself.
NO_RETRY = Retry(predicate=lambda exc: False)

_TRANSIENT = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.Aborted,
    gexc.InternalServerError,
    gexc.Unknown,
    gexc.Cancelled,
    gexc.RetryError,
)

# How the server names the offending field in its messages (as the emulator words them).
_FIELD_IN_MESSAGE = (re.compile(r"field name (\S+) is"), re.compile(r'property "([^"]+)"'))


def field_named(message: str) -> str:
    """The field a server message blames, if it names one."""
    for pattern in _FIELD_IN_MESSAGE:
        found = pattern.search(message)
        if found:
            return found.group(1)
    return ""


def classify(exc: Exception, *, obj: str = "", field: str = "") -> HubError:
    """A google.api_core (or raw gRPC) failure as the hub error a worker acts on.

    UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, INTERNAL, UNKNOWN, CANCELLED → transient;
    RESOURCE_EXHAUSTED → rate limited; every other status (INVALID_ARGUMENT, NOT_FOUND,
    PERMISSION_DENIED, FAILED_PRECONDITION, ...) → permanent, naming the collection and field.
    """
    if isinstance(exc, grpc.RpcError) and not isinstance(exc, gexc.GoogleAPIError):
        exc = gexc.from_grpc_error(exc)  # one that escaped the SDK's wrapping
    if isinstance(exc, gexc.ResourceExhausted):
        return RateLimited(f"{SYSTEM} {obj}: quota exhausted: {exc.message}")
    if isinstance(exc, _TRANSIENT):
        return TransientError(f"{SYSTEM} {obj}: {type(exc).__name__}: {getattr(exc, 'message', exc)}")
    if isinstance(exc, gexc.GoogleAPICallError):
        message = str(exc.message)
        return PermanentError(f"{type(exc).__name__}: {message}", system=SYSTEM, obj=obj,
                              field=field or field_named(message),
                              status=exc.code if isinstance(exc.code, int) else None)
    if isinstance(exc, ValueError | TypeError):  # the SDK refused the input before sending it
        return PermanentError(f"invalid request: {exc}", system=SYSTEM, obj=obj, field=field)
    return PermanentError(f"unexpected {type(exc).__name__}: {exc}", system=SYSTEM, obj=obj, field=field)
