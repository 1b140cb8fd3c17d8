"""Compiled expressions answer exactly as Jinja does: same values, same errors, Jinja when in doubt."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from hub import clock
from hub.config import loader
from hub.errors import ExpressionError, SandboxViolation
from hub.expr import Expression

EXPRESSIONS = [
    "record.total > 500 and record.vip",
    "record.total > 500 or not record.vip",
    "(record.amount or 0) > 50000",
    "record.email is not none and record.email is none",
    "record.status not in ['unsubscribed', 'cleaned'] and record.status in ('a', 'b')",
    "record['status'] == 'active' and record.count != 3",
    "1 < record.count <= 10",
    "min(40 if days_since(record.last) > 90 else 20 if days_since(record.last) > 30 else 0, 30) + 5 * record.count",
    "days_until(record.end) <= 0 and hours_since(record.last) >= 72",
    "record.total / 2 - record.count // 3 + record.count % 2 + 2 ** 3 - -record.count",
    "round(record.total * 1.2, 1) if record.total else none",
    "max([record.count, 4, 2]) + len(record.tags) + sum([1, 2])",
    "record.missing > 3",  # a field the record lacks: Jinja's strict undefined error
    "record.none_value > 3",  # None compared with a number: TypeError, as Jinja reports it
    "record.total.real > 0",  # an attribute of a number: the sandbox decides
    "record.last.year == 2026",  # an attribute of a date: the sandbox decides
    "record.tags[0] == 'x'",  # an index into a list: Jinja
    "unknown_name == 3",
    "event.kind == 'updated' and 'last' not in changed",
    "record.email is defined",
    "record.name ~ '!'",
    "record.items",  # a dict method name that is not a field: the sandbox refuses it
]

RECORDS: list[dict[str, Any]] = [
    {
        "total": 750.5,
        "vip": True,
        "amount": None,
        "email": "a@b.c",
        "status": "active",
        "count": 4,
        "last": datetime(2026, 2, 1, tzinfo=UTC),
        "end": date(2026, 6, 1),
        "tags": ["x", "y"],
        "none_value": None,
        "name": "Ana",
    },
    {
        "total": 0,
        "vip": False,
        "amount": 60000,
        "email": None,
        "status": "cleaned",
        "count": 11,
        "last": "2026-05-30T12:00:00Z",
        "end": "2026-07-01",
        "tags": [],
        "none_value": None,
        "name": "",
    },
    {"total": "12", "vip": None, "count": 0, "last": None, "status": "a", "tags": "xy", "email": ""},
    {  # on the boundaries: 500, 50,000, 10, exactly 90 days
        "total": 500,
        "vip": True,
        "amount": 50000,
        "email": "b@c.d",
        "status": "b",
        "count": 10,
        "last": "2026-03-03T12:00:00Z",
        "end": "2026-06-01",
        "tags": ["x"],
        "none_value": None,
        "name": "B",
    },
]


def _outcome(expr: Expression, context: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "value", expr(context)
    except SandboxViolation as exc:
        return "refused", str(exc)
    except ExpressionError as exc:
        return "error", str(exc)


@pytest.fixture(autouse=True)
def _pinned() -> Any:
    with clock.pinned("2026-06-01T12:00:00Z"):
        yield


@pytest.mark.parametrize("source", EXPRESSIONS)
def test_compiled_expressions_agree_with_jinja(source: str) -> None:
    compiled = Expression(source)
    jinja = Expression(source)
    jinja._py = None  # the reference: Jinja alone
    for record in RECORDS:
        context = {"record": record, "event": {"kind": "updated"}, "changed": ["total"]}
        assert _outcome(compiled, context) == _outcome(jinja, context), (source, record)


def test_the_common_shapes_are_compiled_and_the_rest_left_to_jinja() -> None:
    assert Expression(EXPRESSIONS[7])._py is not None
    assert Expression("record.email is defined")._py is None
    assert Expression("record.name ~ '!'")._py is None
    assert Expression("record.name | upper")._py is None


def test_a_context_value_shadowing_a_helper_is_called_by_the_sandbox_not_directly() -> None:
    calls = []

    class Sneaky:
        def __call__(self, *args: Any) -> int:
            calls.append(args)
            return 1

    expr = Expression("min(record.count, 3)")
    # Jinja's sandbox calls ordinary callables too; what matters is that the compiled path hands it over.
    assert expr({"record": {"count": 5}, "min": Sneaky()}) == 1
    assert calls == [(5, 3)]


def test_every_example_pack_expression_agrees(repo_root: Path) -> None:
    records = [r for r in RECORDS]
    checked = 0
    for pack in sorted((repo_root / "examples").iterdir()):
        if not (pack / "rules.yaml").exists():
            continue
        cfg = loader.load(pack)
        found = [e for e in _expressions(cfg)]
        for expr in found:
            reference = Expression(expr.source)
            reference._py = None
            for record in records:
                context = {"record": record, "event": {"kind": "updated"}, "changed": []}
                assert _outcome(expr, context) == _outcome(reference, context), (pack.name, expr.source)
            checked += 1
    assert checked >= 20


def _expressions(value: Any, seen: set[int] | None = None) -> list[Expression]:
    """Every Expression reachable from a loaded config (rules, scans, computed fields)."""
    seen = seen if seen is not None else set()
    if id(value) in seen or isinstance(value, str | int | float | bool | type(None)):
        return []
    seen.add(id(value))
    if isinstance(value, Expression):
        return [value]
    out: list[Expression] = []
    if isinstance(value, dict):
        children = list(value.values())
    elif isinstance(value, list | tuple | set):
        children = list(value)
    elif hasattr(value, "__dict__"):
        children = list(vars(value).values())
    elif hasattr(value, "__slots__"):
        children = [getattr(value, s, None) for s in value.__slots__]
    else:
        children = []
    for child in children:
        out += _expressions(child, seen)
    return out
