"""What crosses the wire to Mailchimp: subscriber hashes, member write bodies, member JSON as
:class:`~connectors.base.Record`, merge field definitions, and how SDK failures become hub errors."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import requests
from mailchimp_marketing.api_client import ApiClient, ApiClientError

from connectors.base import Collection, FieldSpec, Record
from hub.errors import ConfigError, HubError, PermanentError, RateLimited, TransientError

SYSTEM = "mailchimp"
BATCH_LIMIT = 500  # members per batch subscribe request
PAGE_LIMIT = 1000  # members per page of GET /lists/{id}/members
CONNECTIONS = 10  # simultaneous connections per API key
EVENTS = ("subscribe", "unsubscribe", "profile", "cleaned", "upemail", "campaign")
SOURCES = ("user", "admin", "api")
EVENT_NAME = re.compile(r"^[A-Za-z0-9_-]{2,30}$")
MERGE_TAG = re.compile(r"^[A-Z0-9_]{1,10}$")
# Member fields that are not merge fields (ensure_schema leaves them alone).
MEMBER_FIELDS = frozenset(
    {
        "email_address",
        "status",
        "status_if_new",
        "email_type",
        "language",
        "vip",
        "tags",
        "interests",
        "location",
        "ip_signup",
        "timestamp_signup",
        "ip_opt",
        "timestamp_opt",
        "marketing_permissions",
        "id",
        "unique_email_id",
        "last_changed",
    }
)
MERGE_TYPES = {
    "string": "text",
    "text": "text",
    "email": "text",
    "bool": "text",
    "number": "number",
    "date": "date",
    "datetime": "text",  # a date merge field holds no time of day
    "enum": "dropdown",
    "phone": "phone",
}


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: the MD5 of the lowercased (and here trimmed) email address."""
    return hashlib.md5(email.strip().lower().encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class MemberFailure:
    """One write of an ``upsert_many`` that Mailchimp refused."""

    index: int
    email: str
    error: str
    error_code: str = ""
    field: str = ""


class MailchimpBatchError(PermanentError):
    """Some writes of an ``upsert_many`` were refused; the others were written.
    ``records`` is in write order, None where refused; ``failures`` say why."""

    def __init__(self, list_id: str, records: list[Record | None], failures: list[MemberFailure]) -> None:
        shown = "; ".join(f"#{f.index} {f.email}: {f.error}" for f in failures[:5])
        more = f" (+{len(failures) - 5} more)" if len(failures) > 5 else ""
        super().__init__(
            f"{len(failures)} of {len(records)} members refused: {shown}{more}",
            system=SYSTEM,
            obj=list_id,
            field=failures[0].field,
            status=400,
        )
        self.records = records
        self.failures = failures


class HttpStatus(Exception):
    """A non-2xx answer the SDK handed back as a raw response (it does so for empty bodies)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status
        self.text = text


def problem_body(text: Any) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    try:
        body = json.loads(str(text))
    except ValueError:
        return {"detail": str(text)[:300]}
    return body if isinstance(body, dict) else {"detail": str(body)[:300]}


def classify(exc: Exception, list_id: str = "") -> HubError:
    """429 → RateLimited; 5xx, timeouts and connection errors → TransientError; other 4xx →
    PermanentError naming the list and, when Mailchimp names one, the merge field."""
    status = getattr(exc, "status_code", None)
    if isinstance(exc, (ApiClientError, HttpStatus)) and status is None:
        return TransientError(f"mailchimp: no answer ({exc.text})")
    if not isinstance(exc, (ApiClientError, HttpStatus)):
        if isinstance(exc, requests.RequestException):
            return TransientError(f"mailchimp: {type(exc).__name__}: {exc}")
        return PermanentError(f"unexpected {type(exc).__name__}: {exc}", system=SYSTEM, obj=list_id)
    body = problem_body(exc.text)
    errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
    message = f"{body.get('title', f'HTTP {status}')}: {body.get('detail', '')}".rstrip(": ")
    if errors:
        message += " (" + "; ".join(f"{e.get('field', '')}: {e.get('message', '')}" for e in errors) + ")"
    if status == 429:
        return RateLimited(f"mailchimp: {message}")
    if status >= 500:
        return TransientError(f"mailchimp: {message}")
    field = str(errors[0].get("field", "")) if errors else ""
    return PermanentError(message, system=SYSTEM, obj=list_id, field=field, status=status)


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def to_record(member: dict[str, Any]) -> Record:
    fields = {k: v for k, v in member.items() if k != "_links"}
    created = parse_time(member.get("timestamp_signup")) or parse_time(member.get("timestamp_opt"))
    return Record(
        id=str(member["id"]),
        fields=fields,
        created_at=created,
        updated_at=parse_time(member.get("last_changed")),
    )


def dig(doc: dict[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def member_body(fields: dict[str, Any]) -> dict[str, Any]:
    """A member write body: ``merge_fields.X`` keys nested, an email trimmed."""
    body: dict[str, Any] = {}
    for key, value in fields.items():
        if key.startswith("merge_fields."):
            body.setdefault("merge_fields", {})[key.split(".", 1)[1]] = value
        elif key == "merge_fields" and isinstance(value, dict):
            body.setdefault("merge_fields", {}).update(value)
        else:
            body[key] = value
    if isinstance(body.get("email_address"), str):
        body["email_address"] = body["email_address"].strip()
    return body


def list_id_of(coll: Collection | str) -> str:
    list_id = coll.name if isinstance(coll, Collection) else coll
    if not isinstance(list_id, str) or not list_id.strip():
        raise ConfigError(f"a Mailchimp collection needs a list (audience) id, got {list_id!r}")
    return list_id


def expect_doc(result: Any, what: str, list_id: str) -> dict[str, Any]:
    if not isinstance(result, dict):
        raise PermanentError(f"{what}: expected a JSON object, got {type(result).__name__}", system=SYSTEM, obj=list_id)
    return result


def merge_field_body(spec: FieldSpec, tag: str) -> dict[str, Any]:
    if not MERGE_TAG.match(tag):
        raise ConfigError(f"Mailchimp merge tag {tag!r} (from field {spec.name!r}) must be 1-10 letters, digits or _")
    if spec.type not in MERGE_TYPES:
        raise ConfigError(
            f"field {spec.name!r}: type {spec.type!r} has no Mailchimp merge field type; known: {sorted(MERGE_TYPES)}"
        )
    body: dict[str, Any] = {
        "tag": tag,
        "name": spec.label or tag,
        "type": MERGE_TYPES[spec.type],
        "required": False,
    }
    if spec.type == "enum":
        if not spec.options:
            raise ConfigError(f"enum field {spec.name!r} needs options to become a Mailchimp dropdown")
        body["options"] = {"choices": [str(o) for o in spec.options]}
    return body


class _Answer(requests.Response):
    """A response whose JSON the SDK reads with orjson: a batch answer holds every member whole
    (~2 KB each), and the stdlib parser takes twice as long over it."""

    def json(self, **kwargs: Any) -> Any:
        return orjson.loads(self.content)


class SessionApiClient(ApiClient):  # type: ignore[misc]
    """The SDK's API client over one keep-alive :class:`requests.Session`.

    The SDK sends every call with ``requests.post(...)`` and the like: a new connection each time,
    against Mailchimp a new TLS handshake, for every batch. Bodies are written and answers read
    with orjson. Everything else (URLs, headers, how answers and errors are read) stays the SDK's."""

    _METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})
    _WITH_BODY = frozenset({"POST", "PUT", "PATCH"})

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.session = requests.Session()

    def request(
        self,
        method: str,
        url: str,
        query_params: Any = None,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> requests.Response:
        if method not in self._METHODS:
            raise ValueError(f"http method must be one of {sorted(self._METHODS)}, got {method!r}")
        headers = dict(headers or {})
        auth = ("user", self.api_key) if self.is_basic_auth else None
        if self.is_oauth:
            headers["Authorization"] = "Bearer " + self.access_token
        data = orjson.dumps(body) if method in self._WITH_BODY else None
        resp = self.session.request(
            method, url, params=query_params, data=data, headers=headers, auth=auth, timeout=self.timeout
        )
        resp.__class__ = _Answer
        return resp
