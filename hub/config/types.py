"""Field types shared by the mapping and rule models, each with its JSON Schema for editors."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, WithJsonSchema

from hub.errors import HubError
from hub.expr import Expression, Template, format_duration, parse_duration

_T = TypeVar("_T")


class Strict(BaseModel):
    """Unknown keys are refused; values are not coerced across types silently."""

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, arbitrary_types_allowed=True, coerce_numbers_to_str=True
    )

    def memo(self, name: str, build: Callable[[], _T]) -> _T:
        """A value derived from this model (never changed once loaded), built on first use and
        kept beside the model's fields: the sync and rules hot paths look these up per value."""
        value: _T | None = self.__dict__.get(name)
        if value is None:
            if not name.startswith("_memo_"):
                raise ValueError(f"memo names start with _memo_, got {name!r}")  # never a model field
            value = build()
            object.__setattr__(self, name, value)
        return value


_IDENT = re.compile(r"^[a-z][a-z0-9_]*$")


def _identifier(value: Any) -> str:
    if not isinstance(value, str) or not _IDENT.match(value):
        raise ValueError(f"expected a lowercase name (letters, digits, _; starting with a letter), got {value!r}")
    return value


Identifier = Annotated[
    str,
    BeforeValidator(_identifier),
    WithJsonSchema({"type": "string", "pattern": _IDENT.pattern}),
]


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    td = parse_duration(value)
    if td.total_seconds() <= 0:
        raise ValueError(f"expected a positive duration, got {value!r}")
    return td


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\s*(\d+(\.\d+)?\s*[wdhms]\s*)+$",
            "description": "A duration: 30d, 72h, 1d12h, 15m, 2w",
        }
    ),
]


def _expression(value: Any) -> Expression:
    if isinstance(value, Expression):
        return value
    if isinstance(value, bool | int | float):
        value = str(value).lower() if isinstance(value, bool) else str(value)
    try:
        return Expression(value)
    except HubError as exc:
        raise ValueError(str(exc)) from None


ExprField = Annotated[
    Expression,
    BeforeValidator(_expression),
    PlainSerializer(lambda e: e.source, return_type=str),
    WithJsonSchema({"type": "string", "description": "A Jinja expression, e.g. record.total_spent > 500"}),
]


def _template(value: Any) -> Template:
    if isinstance(value, Template):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a text template, got {value!r}")
    try:
        return Template(value)
    except HubError as exc:
        raise ValueError(str(exc)) from None


TemplateField = Annotated[
    Template,
    BeforeValidator(_template),
    PlainSerializer(lambda t: t.source, return_type=str),
    WithJsonSchema({"type": "string", "description": "Text with {{ expressions }}"}),
]


def _cron(value: Any) -> str:
    if not isinstance(value, str) or not croniter.is_valid(value):
        raise ValueError(f"expected a cron expression like '0 9 * * 1' (min hour day month weekday), got {value!r}")
    return value


Cron = Annotated[
    str, BeforeValidator(_cron), WithJsonSchema({"type": "string", "description": "cron: m h dom mon dow"})
]


def _timezone(value: Any) -> str:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name like 'Europe/Paris')") from None
    return str(value)


TimeZone = Annotated[str, BeforeValidator(_timezone), WithJsonSchema({"type": "string", "examples": ["Europe/Paris"]})]


def _unresolved(value: str) -> None:
    if "${" in value:
        raise ValueError("the environment variable it refers to is not set")


def _secret(value: Any) -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 (the prefix is optional)."""
    import base64
    import binascii

    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a signing secret like 'whsec_...', got {value!r}")
    _unresolved(value)
    try:
        raw = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("expected a signing secret 'whsec_' followed by base64 (the value is not shown)") from None
    if len(raw) < 16:
        raise ValueError("the signing secret is too short: use at least 16 random bytes")
    return value


SigningSecret = Annotated[str, BeforeValidator(_secret), WithJsonSchema({"type": "string", "pattern": "^(whsec_)?"})]


def _url(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a URL, got {value!r}")
    _unresolved(value)
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError(f"expected an http(s) URL, got {value!r}")
    return value


Url = Annotated[str, BeforeValidator(_url), WithJsonSchema({"type": "string", "format": "uri"})]
