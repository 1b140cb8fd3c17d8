"""How HubSpot's wire looks from the hub: property values as HubSpot's strings, and SDK failures
turned into hub errors (rate limits with their wait, transient 5xx and network trouble, permanent
4xx naming the object type and the property HubSpot blamed).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, date, datetime
from typing import Any

from urllib3.exceptions import HTTPError as Urllib3Error

from connectors.retry import parse_retry_after
from hub.errors import HubError, PermanentError, RateLimited, TransientError

SYSTEM = "hubspot"
_NESTED = re.compile(r"^Property values were not valid: (\[.*\])$", re.S)


def token_key(token: str) -> str:
    """Quota key of a token: all workers using it share one budget, and the token stays secret."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def to_hubspot(value: Any) -> str:
    """A Python value as HubSpot's property strings: "" clears, bools are true/false, lists use ";"."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        ms = int(dt.timestamp() * 1000)
        return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        return ";".join(to_hubspot(v) for v in value)
    return str(value)


def epoch_ms(value: str | None) -> int | None:
    if not value:
        return None
    if value.isdigit():
        return int(value)
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def _body(exc: Exception) -> dict[str, Any]:
    raw = getattr(exc, "body", None)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        return {"message": str(raw)[:300]}
    return parsed if isinstance(parsed, dict) else {}


def classify(exc: Exception, obj: str = "") -> HubError:
    """The hub error for a failed SDK call: 429 → RateLimited, 5xx/network → TransientError,
    any other 4xx → PermanentError naming HubSpot, the object type and the property at fault."""
    if isinstance(exc, Urllib3Error | OSError):
        return TransientError(f"hubspot {obj}: network error: {exc}".replace("  ", " "))
    status = getattr(exc, "status", None)
    if not isinstance(status, int):
        return PermanentError(f"{type(exc).__name__}: {exc}", system=SYSTEM, obj=obj)
    if status == 0:  # the SDK's own wrapper: SSL trouble is passing, an unparsable answer is not
        reason = str(getattr(exc, "reason", ""))
        if reason.startswith("SSLError"):
            return TransientError(f"hubspot {obj}: {reason}")
        return PermanentError(reason or str(exc), system=SYSTEM, obj=obj)
    body = _body(exc)
    headers = getattr(exc, "headers", None) or {}
    message = str(body.get("message") or getattr(exc, "reason", "") or f"HTTP {status}")
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if status == 429:
        policy = str(body.get("policyName", ""))
        if retry_after is None:
            interval = parse_retry_after(headers.get("X-HubSpot-RateLimit-Interval-Milliseconds"))
            retry_after = {"SECONDLY": 1.0, "DAILY": 3600.0}.get(policy, (interval or 10_000.0) / 1000.0)
        err = RateLimited(f"hubspot {obj}: {message} ({policy or 'rate limit'})", retry_after=retry_after)
        err.policy = policy  # type: ignore[attr-defined]
        return err
    if status >= 500 or status == 408:
        return TransientError(f"hubspot {obj}: HTTP {status}: {message}", retry_after=retry_after)
    field, message = _property_at_fault(body, message)
    if status == 404 and not body:
        message = "not found"
    return PermanentError(f"HTTP {status}: {message}", system=SYSTEM, obj=obj, field=field, status=status)


def _property_at_fault(body: dict[str, Any], message: str) -> tuple[str, str]:
    """(property, readable message) from HubSpot's nested ``Property values were not valid`` body."""
    nested = _NESTED.match(message)
    if nested:
        try:
            problems = json.loads(nested.group(1))
        except ValueError:
            problems = []
        if problems and isinstance(problems[0], dict):
            names = [str(p.get("name", "")) for p in problems]
            text = "; ".join(f"{p.get('name')}: {p.get('message')} ({p.get('error')})" for p in problems)
            return names[0], text
    context = body.get("context") or {}
    names = context.get("propertyName") or context.get("properties") or []
    quoted = re.search(r'[Pp]roperty "?([a-z0-9_]+)"? does not exist', message)
    return (str(names[0]) if names else (quoted.group(1) if quoted else "")), message
