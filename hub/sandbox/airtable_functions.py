"""Value semantics and the function table of the Airtable formula sandbox.

Formula values are plain Python: ``None`` (blank), ``str``, ``int``/``float``, ``bool``, aware
``datetime``, ``list`` (multiple selects) and :data:`ERROR`. Coercions follow Airtable's rules
closely enough for record filters: blanks equal ``""`` and ``0``, text compares to numbers
numerically when it parses, and dates compare as instants.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any


class _ErrorValue:
    """``#ERROR!``: what a failed computation yields; it filters the record out."""

    def __repr__(self) -> str:
        return "#ERROR!"


ERROR = _ErrorValue()


def truthy(value: Any) -> bool:
    """Airtable keeps a record unless the result is 0, false, "", NaN, [] or an error."""
    if value is None or value is ERROR:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    if isinstance(value, (list, tuple, str)):
        return len(value) > 0
    return bool(value)


def parse_instant(value: Any) -> datetime | _ErrorValue:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if not isinstance(value, str) or not value.strip():
        return ERROR
    raw = value.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return ERROR
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def to_text(value: Any) -> str:
    if value is None or value is ERROR:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, (list, tuple)):
        return ", ".join(to_text(v) for v in value)
    return str(value)


def to_number(value: Any) -> float | int | _ErrorValue:
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return ERROR
    return ERROR


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float))


def compare(op: str, left: Any, right: Any) -> bool | _ErrorValue:
    if left is ERROR or right is ERROR:
        return ERROR
    if isinstance(left, (list, tuple)):
        left = to_text(left)
    if isinstance(right, (list, tuple)):
        right = to_text(right)
    if isinstance(left, datetime) or isinstance(right, datetime):
        if left is None or right is None:
            a, b = (0, 1) if left is None else (1, 0)  # blank dates sort first and equal nothing
        else:
            a, b = parse_instant(left), parse_instant(right)  # type: ignore[assignment]
            if a is ERROR or b is ERROR:
                return ERROR
    elif _is_num(left) or _is_num(right) or (left is None and right is None):
        if (left is None and right == "") or (right is None and left == ""):
            a, b = 0, 0
        else:
            a, b = to_number(left), to_number(right)  # type: ignore[assignment]
            if a is ERROR or b is ERROR:
                a, b = to_text(left), to_text(right)  # type: ignore[assignment]
    else:
        a, b = to_text(left), to_text(right)  # type: ignore[assignment]
    return {
        "=": a == b,
        "!=": a != b,
        "<": a < b,
        ">": a > b,
        "<=": a <= b,
        ">=": a >= b,  # type: ignore[operator]
    }[op]


def arith(op: str, left: Any, right: Any) -> Any:
    a, b = to_number(left), to_number(right)
    if a is ERROR or b is ERROR:
        return ERROR
    if op == "+":
        return a + b  # type: ignore[operator]
    if op == "-":
        return a - b  # type: ignore[operator]
    if op == "*":
        return a * b  # type: ignore[operator]
    if b == 0:
        return math.nan if a == 0 else math.copysign(math.inf, a)  # type: ignore[arg-type]
    return a / b  # type: ignore[operator]


def _date_unit(unit: Any) -> str:
    text = to_text(unit).lower().rstrip("s") or "day"
    aliases = {"d": "day", "w": "week", "m": "month", "y": "year", "h": "hour", "ms": "millisecond"}
    return aliases.get(text, text)


def _dateadd(d: Any, n: Any, unit: Any) -> Any:
    base, count = parse_instant(d), to_number(n)
    if base is ERROR or count is ERROR:
        return ERROR
    u = _date_unit(unit)
    if u in ("month", "year"):
        months = int(count) * (12 if u == "year" else 1)  # type: ignore[arg-type]
        y, m = divmod(base.month - 1 + months, 12)  # type: ignore[union-attr]
        return base.replace(year=base.year + y, month=m + 1, day=min(base.day, 28))  # type: ignore[union-attr]
    seconds = {"millisecond": 0.001, "second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
    if u not in seconds:
        return ERROR
    return base + timedelta(seconds=float(count) * seconds[u])  # type: ignore[operator,arg-type]


def _diff(a: Any, b: Any, unit: Any) -> Any:
    x, y = parse_instant(a), parse_instant(b)
    if x is ERROR or y is ERROR:
        return ERROR
    secs = (x - y).total_seconds()  # type: ignore[operator]
    per = {"millisecond": 0.001, "second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
    return int(secs / per.get(_date_unit(unit), 86400))


def _find(needle: Any, hay: Any, start: Any = 1, *, fold: bool = False) -> Any:
    n, h = to_text(needle), to_text(hay)
    if fold:
        n, h = n.lower(), h.lower()
    pos = h.find(n, max(int(to_number(start) or 1) - 1, 0))  # type: ignore[arg-type]
    if pos < 0:
        return None if fold else 0
    return pos + 1


def _same(a: Any, b: Any, unit: Any = "millisecond") -> Any:
    x, y = parse_instant(a), parse_instant(b)
    if x is ERROR or y is ERROR:
        return ERROR
    fmt = {"year": "%Y", "month": "%Y%m", "day": "%Y%m%d", "hour": "%Y%m%d%H", "minute": "%Y%m%d%H%M"}
    f = fmt.get(_date_unit(unit))
    return x == y if f is None else x.strftime(f) == y.strftime(f)  # type: ignore[union-attr]


def _num(v: Any) -> float | int:
    """A number, or ValueError (the record's result is then #ERROR!)."""
    x = to_number(v)
    if x is ERROR:
        raise ValueError(f"not a number: {v!r}")
    return x  # type: ignore[return-value]


def _int(v: Any) -> int:
    return int(_num(v))


def _instant(v: Any) -> datetime:
    x = parse_instant(v)
    if x is ERROR:
        raise ValueError(f"not a date: {v!r}")
    return x  # type: ignore[return-value]


def _slice(s: Any, start: Any, count: Any) -> str:
    first = max(_int(start) - 1, 0)
    return to_text(s)[first : first + max(_int(count), 0)]


# Eager functions get evaluated arguments; (min, max) argument counts, max None = variadic.
EAGER: dict[str, tuple[int, int | None, Callable[..., Any]]] = {
    "NOT": (1, 1, lambda v: not truthy(v)),
    "TRUE": (0, 0, lambda: True),
    "FALSE": (0, 0, lambda: False),
    "BLANK": (0, 0, lambda: None),
    "ERROR": (0, 0, lambda: ERROR),
    "ISERROR": (1, 1, lambda v: v is ERROR),
    "XOR": (1, None, lambda *vs: sum(truthy(v) for v in vs) % 2 == 1),
    "LOWER": (1, 1, lambda s: to_text(s).lower()),
    "UPPER": (1, 1, lambda s: to_text(s).upper()),
    "TRIM": (1, 1, lambda s: to_text(s).strip()),
    "LEN": (1, 1, lambda s: len(to_text(s))),
    "T": (1, 1, lambda v: v if isinstance(v, str) else None),
    "VALUE": (1, 1, lambda s: to_number(to_text(s).replace(",", "").strip() or 0)),
    "CONCATENATE": (1, None, lambda *vs: "".join(to_text(v) for v in vs)),
    "ARRAYJOIN": (1, 2, lambda a, sep=", ": to_text(sep).join(to_text(v) for v in (a or []))),
    "LEFT": (2, 2, lambda s, n: _slice(s, 1, n)),
    "RIGHT": (2, 2, lambda s, n: _slice(s, len(to_text(s)) - _int(n) + 1, n)),
    "MID": (3, 3, _slice),
    "SUBSTITUTE": (3, 3, lambda s, old, new: to_text(s).replace(to_text(old), to_text(new))),
    "FIND": (2, 3, _find),
    "SEARCH": (2, 3, lambda n, h, s=1: _find(n, h, s, fold=True)),
    "ABS": (1, 1, lambda v: abs(_num(v))),
    "ROUND": (1, 2, lambda v, p=0: round(_num(v), _int(p))),
    "INT": (1, 1, lambda v: math.floor(_num(v))),
    "MOD": (2, 2, lambda a, b: arith("-", a, arith("*", b, math.floor(arith("/", a, b))))),
    "MAX": (1, None, lambda *vs: max(to_number(v) for v in vs)),  # type: ignore[type-var]
    "MIN": (1, None, lambda *vs: min(to_number(v) for v in vs)),  # type: ignore[type-var]
    "SUM": (1, None, lambda *vs: sum(to_number(v) for v in vs)),  # type: ignore[misc]
    "DATETIME_PARSE": (1, 3, lambda s, *_: parse_instant(s)),
    "IS_AFTER": (2, 2, lambda a, b: compare(">", parse_instant(a), parse_instant(b))),
    "IS_BEFORE": (2, 2, lambda a, b: compare("<", parse_instant(a), parse_instant(b))),
    "IS_SAME": (2, 3, _same),
    "DATEADD": (3, 3, _dateadd),
    "DATETIME_DIFF": (2, 3, lambda a, b, u="seconds": _diff(a, b, u)),
    "DATESTR": (1, 1, lambda d: _instant(d).strftime("%Y-%m-%d")),
}
# Context functions (evaluated by the formula module) need the row; AND/OR/IF/SWITCH
# short-circuit on lazy arguments.
CONTEXT: dict[str, tuple[int, int | None]] = {
    "RECORD_ID": (0, 0),
    "CREATED_TIME": (0, 0),
    "LAST_MODIFIED_TIME": (0, None),
    "NOW": (0, 0),
    "TODAY": (0, 0),
    "AND": (1, None),
    "OR": (1, None),
    "IF": (2, 3),
    "SWITCH": (2, None),
}
