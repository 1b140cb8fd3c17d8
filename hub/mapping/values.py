"""Canonical values: what a field's declared type means, whatever system the value came from.

email → stripped lowercase; phone → E.164; date → ``datetime.date``; datetime → aware UTC
``datetime`` (naive input read in the field's time zone); number → int when integral else float;
bool from the many spellings systems use; enum → one of the declared values.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from hub.config.mapping import FieldDef
from hub.mapping.phone import to_e164

_TRUE = {"true", "yes", "y", "1", "on", "checked", "oui", "vrai"}
_FALSE = {"false", "no", "n", "0", "off", "unchecked", "non", "faux", ""}


class ValueProblem(ValueError):
    """A value that does not fit its field's type; the message names the value."""


_PLAIN_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def _number(value: Any, integer: bool) -> int | float:
    if isinstance(value, bool):
        raise ValueProblem(f"expected a number, got {value!r}")
    if isinstance(value, int | float):
        num: float | int = value
    elif isinstance(value, str) and _PLAIN_NUMBER.match(value):
        num = float(value)  # the common case, without the clean-up below
    else:
        text = str(value).strip().replace("\u00a0", "").replace(" ", "").replace("€", "").replace("$", "")
        if text.count(",") == 1 and "." not in text:
            text = text.replace(",", ".")  # French decimals: 4,5
        text = text.replace(",", "")
        try:
            num = float(text)
        except ValueError:
            raise ValueProblem(f"expected a number, got {value!r}") from None
    if isinstance(num, float) and (math.isnan(num) or math.isinf(num)):
        raise ValueProblem(f"expected a finite number, got {value!r}")
    if integer:
        if float(num) != int(num):
            raise ValueProblem(f"expected a whole number, got {value!r}")
        return int(num)
    return int(num) if float(num).is_integer() and abs(num) < 2**53 else float(num)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueProblem(f"expected true/false, got {value!r}")


def _datetime(value: Any, tz: str | None) -> datetime:
    zone = ZoneInfo(tz) if tz else UTC
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000.0, tz=UTC)  # epoch milliseconds (HubSpot)
    else:
        text = str(value).strip()
        if text.isdigit() and len(text) >= 11:
            return datetime.fromtimestamp(int(text) / 1000.0, tz=UTC)
        try:
            dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            raise ValueProblem(f"expected an ISO date/time like 2026-01-14T09:30:00Z, got {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone)
    # Millisecond precision: what every system keeps, so a value survives a round trip unchanged.
    return dt.astimezone(UTC).replace(microsecond=dt.microsecond // 1000 * 1000)


def _date(value: Any, tz: str | None) -> date:
    if isinstance(value, datetime):
        return value.astimezone(ZoneInfo(tz)).date() if tz and value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000.0, tz=UTC).date()
    text = str(value).strip()
    if text.isdigit() and len(text) >= 11:
        return datetime.fromtimestamp(int(text) / 1000.0, tz=UTC).date()
    for candidate in (text[:10], text):
        try:
            return date.fromisoformat(candidate)
        except ValueError:
            pass
    for fmt in ("%d/%m/%Y", "%d.%m.%Y", "%d-%m-%Y"):  # European exports (the DJ's CSVs)
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            pass
    raise ValueProblem(f"expected a date like 2026-01-14 or 14/01/2026, got {value!r}")


_PHONES: dict[tuple[str, str | None], str] = {}
_PHONES_MAX = 8192


def phone_e164(value: Any, region: str | None) -> str:
    """Parsing a number is the costliest value conversion, and the same numbers come back with every
    change of their record (raw from a system, then in the hub's own E.164 form): remember both."""
    text = str(value).strip()
    known = _PHONES.get((text, region))
    if known is None:
        found = to_e164(text, region)
        if found is None:
            raise ValueProblem(f"expected a phone number, got {text!r}")
        known = found
        if len(_PHONES) >= _PHONES_MAX:
            _PHONES.clear()
        _PHONES[(text, region)] = known
        _PHONES[(known, region)] = known  # an E.164 number parses to itself
    return known


def clear_phone_cache() -> None:
    _PHONES.clear()


def _email(value: Any) -> str:
    text = str(value).strip().lower()
    if "@" not in text or text.startswith("@") or text.endswith("@"):
        raise ValueProblem(f"expected an email address, got {value!r}")
    return text


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def coercer(fd: FieldDef, region: str | None = None) -> Callable[[Any], Any]:
    """The canonical conversion of one field, specialised once (sync reads call it per value).
    It expects a non-empty value; :func:`coerce` handles None and blanks."""
    t = fd.type
    if t in ("string", "text", "url"):
        return _text
    if t == "email":
        return _email
    if t == "phone":
        r = fd.region or region
        return lambda v: phone_e164(v, r)
    if t in ("number", "integer"):
        integer = t == "integer"
        return lambda v: _number(v, integer)
    if t == "bool":
        return _bool
    if t == "date":
        tz = fd.tz
        return lambda v: _date(v, tz)
    if t == "datetime":
        tz = fd.tz
        return lambda v: _datetime(v, tz)
    return lambda v: _coerce_other(fd, v)


def coerce(fd: FieldDef, value: Any, *, region: str | None = None) -> Any:
    """``value`` as the canonical value of a field of definition ``fd`` (None stays None)."""
    if value is None or (isinstance(value, str) and value.strip() == "" and fd.type not in ("string", "text")):
        return None
    return coercer(fd, region)(value)


def _coerce_other(fd: FieldDef, value: Any) -> Any:
    t = fd.type
    if t == "enum":
        text = str(value).strip()
        values = fd.values or []
        if text in values:
            return text
        lowered = {v.lower(): v for v in values}
        if text.lower() in lowered:
            return lowered[text.lower()]
        raise ValueProblem(f"expected one of {values}, got {value!r}")
    if t == "list":
        if isinstance(value, list):
            return value
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    parsed = json.loads(text)
                    if isinstance(parsed, list):
                        return parsed
                except ValueError:
                    pass
            return [p.strip() for p in text.split(";") if p.strip()]
        return [value]
    if t == "json":
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value
    raise ValueProblem(f"unknown field type {t!r}")


_AS_IS = frozenset({str, int, bool, type(None)})  # JSON already: most values of most records


def to_json(value: Any) -> Any:
    """A canonical value as JSON (dates as ISO strings) — for job arguments and plans. Called for
    every record read and every firing: the values that need nothing take the shortest way."""
    if type(value) in _AS_IS:
        return value
    if isinstance(value, dict):
        return {k: v if type(v) in _AS_IS else to_json(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)  # 5000.0 and 5000 are one value (Redis' JSON would say so anyway)
    return value
