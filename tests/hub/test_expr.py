"""The expression sandbox: helpers on a pinned clock, native values, and escapes refused."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from hub import clock
from hub.errors import ExpressionError, SandboxViolation
from hub.expr import Expression, Template, format_duration, parse_duration


@pytest.fixture
def pinned() -> None:
    clock.pin("2026-01-14T12:00:00Z")


@pytest.mark.usefixtures("pinned")
@pytest.mark.parametrize(
    ("source", "record", "expected"),
    [
        ("days_since(record.d)", {"d": "2025-10-16"}, 90),  # 90.5 days → 90
        ("days_since(record.d)", {"d": "2025-10-17"}, 89),
        ("days_since(record.d)", {"d": date(2025, 1, 14)}, 365),
        ("days_since(record.d)", {"d": None}, None),
        ("hours_since(record.d)", {"d": "2026-01-11T12:00:00Z"}, 72.0),
        ("days_until(record.d)", {"d": "2026-04-14"}, 90),
        ("today() - days(3)", {}, date(2026, 1, 11)),
        ("now() + hours(1)", {}, datetime.fromisoformat("2026-01-14T13:00:00+00:00")),
        ("record.total > 500 and days_since(record.last) > 14", {"total": 501, "last": "2025-12-30T11:59:59Z"}, True),
        ("record.total > 500 and days_since(record.last) > 14", {"total": 501, "last": "2025-12-31T12:00:00Z"}, False),
        ("min(record.n * 10, 30)", {"n": 5}, 30),
        ("record.email | lower", {"email": "A@B.C"}, "a@b.c"),
        ("'vip' if record.bookings >= 10 else 'standard'", {"bookings": 10}, "vip"),
        ("record.tags | length", {"tags": ["a", "b"]}, 2),
    ],
)
def test_expressions(source: str, record: dict, expected: object) -> None:
    assert Expression(source)({"record": record}) == expected


def test_templates_keep_native_values_for_a_single_expression() -> None:
    assert Template("{{ record.n + 1 }}").render({"record": {"n": 41}}) == 42
    assert Template("Hi {{ record.name }} ({{ record.n }})").render({"record": {"name": "Ana", "n": 3}}) == "Hi Ana (3)"
    assert Template("plain").render({}) == "plain"
    assert Template("{% for t in record.tags %}{{ t }};{% endfor %}").names == {"record"}


@pytest.mark.parametrize(
    "source",
    [
        "''.__class__.__mro__",
        "record.__class__",
        "record['__class__']",
        "record|attr('__class__')",
        "self.__init__.__globals__",
        "cycler.__init__.__globals__.os",
        "lipsum.__globals__['os']",
    ],
)
def test_escapes_are_refused_at_compile_time(source: str) -> None:
    with pytest.raises((SandboxViolation, ExpressionError)):
        Expression(source)({"record": {}})


@pytest.mark.parametrize(
    "source",
    [
        "(record|attr('_' ~ '_class__'))",
        "(''|attr('_' ~ '_class__'))",
        "record.items|attr('_' ~ '_self__')",
    ],
)
def test_escapes_are_refused_at_run_time(source: str) -> None:
    expr = Expression(source)  # nothing static to see: the name is computed
    with pytest.raises(SandboxViolation):
        expr({"record": {"a": 1}})


def test_helpers_do_not_expose_modules() -> None:
    for source in ("now.__globals__", "days_since.__code__", "now().__class__"):
        with pytest.raises(SandboxViolation):
            Expression(source)({})


def test_runtime_error_names_the_expression() -> None:
    expr = Expression("record.total > 500")
    with pytest.raises(ExpressionError, match=r"record.total > 500"):
        expr({"record": {"total": None}})
    with pytest.raises(ExpressionError, match="has no attribute 'missing'"):
        Expression("record.missing")({"record": {}})


def test_ranges_are_bounded() -> None:
    with pytest.raises(ExpressionError):
        Expression("range(10**9) | list | length")({})


def test_durations_round_trip() -> None:
    assert parse_duration("1d12h") == timedelta(hours=36)
    assert parse_duration("400d") == timedelta(days=400)
    assert format_duration(timedelta(hours=72)) == "3d"
    assert format_duration(timedelta(hours=36, minutes=5)) == "1d12h5m"
    for bad in ("soon", "3 days", "", "d3", True):
        with pytest.raises(ValueError):
            parse_duration(bad)
