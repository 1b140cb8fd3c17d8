"""Rule expressions and value templates: Jinja2 in a sandbox, compiled once at load.

Conditions are expressions (``record.total_spent > 500 and days_since(record.last_booking) > 14``);
values are templates (``"Welcome {{ record.first_name }}"``). A template that is exactly one
``{{ expression }}`` yields the expression's native value (a number stays a number).

Escapes are refused twice: statically at load (any ``_``-prefixed attribute or key, the Jinja
internals ``self``/``loop`` globals) and at run time by the sandbox, which raises instead of
returning undefined. All time helpers read :mod:`hub.clock`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from hub import clock
from hub.errors import ExpressionError, SandboxViolation
from hub.exprpy import compile_python

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|m|s)")
_UNITS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str | int | float) -> timedelta:
    """``"72h"``, ``"3d"``, ``"1d12h"``, ``"15m"``, ``"2w"`` or plain seconds."""
    if isinstance(text, bool):
        raise ValueError(f"expected a duration like '30d' or '12h', got {text!r}")
    if isinstance(text, int | float):
        return timedelta(seconds=float(text))
    raw = str(text).strip().replace(" ", "")
    pos, total = 0, 0.0
    for m in _DURATION.finditer(raw):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(raw) or not raw:
        raise ValueError(f"expected a duration like '30d', '72h' or '1d12h', got {text!r}")
    return timedelta(seconds=total)


def format_duration(td: timedelta) -> str:
    """The inverse of :func:`parse_duration`: ``3d``, ``1d12h``, ``90s``."""
    seconds = int(td.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def to_datetime(value: Any) -> datetime | None:
    """Coerce a date, datetime, ISO string or epoch milliseconds to an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000.0, tz=UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return datetime.fromtimestamp(int(text) / 1000.0, tz=UTC)
        return clock.parse_instant(text)
    raise ExpressionError(f"cannot read {value!r} as a date")


def _since(value: Any, unit: float) -> float | None:
    when = to_datetime(value)
    if when is None:
        return None
    return (clock.now() - when).total_seconds() / unit


def days_since(value: Any) -> int | None:
    """Whole days elapsed (floor), ``None`` for a missing date: ``none > 90`` is then an error
    the rule reports, so write ``days_since(x) is none or days_since(x) > 90`` explicitly."""
    d = _since(value, 86400.0)
    return None if d is None else math.floor(d)


def hours_since(value: Any) -> float | None:
    return _since(value, 3600.0)


def days_until(value: Any) -> int | None:
    d = _since(value, 86400.0)
    return None if d is None else math.ceil(-d)


def _today() -> date:
    return clock.today()


def _date(value: Any) -> date | None:
    when = to_datetime(value)
    return None if when is None else when.date()


HELPERS: dict[str, Callable[..., Any]] = {
    "now": clock.now,
    "today": _today,
    "days_since": days_since,
    "hours_since": hours_since,
    "days_until": days_until,
    "days": lambda n: timedelta(days=n),
    "hours": lambda n: timedelta(hours=n),
    "minutes": lambda n: timedelta(minutes=n),
    "duration": parse_duration,
    "datetime": to_datetime,
    "date": _date,
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
    "len": len,
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "sum": sum,
    "any": any,
    "all": all,
}


_HELPER_IDS = {id(f) for f in HELPERS.values()}


class HubSandbox(SandboxedEnvironment):
    """The sandbox, with a fast path for the dict-shaped records rules read and loud refusals."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute[:1] != "_":
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # Our own helpers are safe by construction: skip the sandbox's per-call inspection.
        if id(__obj) in _HELPER_IDS:
            return __obj(*args, **kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__} object is not allowed")


def _new_env() -> HubSandbox:
    env = HubSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.globals.clear()
    env.globals.update(HELPERS)
    env.filters["duration"] = parse_duration
    env.filters["datetime"] = to_datetime
    env.filters["date"] = _date
    return env


ENV = _new_env()
_SINGLE_EXPR = re.compile(r"^\s*\{\{(?!.*\{\{)(.*?)\}\}\s*$", re.S)


def _static_check(tree: nodes.Node, source: str) -> None:
    for node in tree.find_all(nodes.Filter):
        if node.name == "attr" and node.args and isinstance(node.args[0], nodes.Const):
            name = node.args[0].value
            if isinstance(name, str) and name.startswith("_"):
                raise SandboxViolation(f"access to {name!r} is not allowed in expressions: {source!r}")
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            raise SandboxViolation(f"access to {node.attr!r} is not allowed in expressions: {source!r}")
        if (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
            and node.arg.value.startswith("_")
        ):
            raise SandboxViolation(f"access to {node.arg.value!r} is not allowed in expressions: {source!r}")
        if isinstance(node, nodes.Name) and node.ctx == "load" and node.name in {"self", "loop", "caller", "varargs"}:
            raise SandboxViolation(f"{node.name!r} is not available in expressions: {source!r}")


def free_names(tree: nodes.Node) -> set[str]:
    """Variables an expression reads from its context (loop/set targets excluded)."""
    loads = {n.name for n in tree.find_all(nodes.Name) if n.ctx == "load"}
    stores = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    return loads - stores


def attribute_paths(tree: nodes.Node, root: str) -> list[str]:
    """Attribute names read directly off ``root`` (``record.status`` → ``status``), for checking
    field names at load time."""
    found = []
    for node in tree.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.node.name == root:
            found.append(node.attr)
    for node in tree.find_all(nodes.Getitem):
        if (
            isinstance(node.node, nodes.Name)
            and node.node.name == root
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
        ):
            found.append(node.arg.value)
    return found


def _clean_error(exc: Exception) -> str:
    if isinstance(exc, TemplateSyntaxError):
        return exc.message or str(exc)
    return str(exc)


class Expression:
    """A compiled condition/expression. ``names`` lists the variables it reads."""

    __slots__ = ("_fn", "_py", "fields_read", "names", "source")

    def __init__(self, source: str, *, root: str = "record") -> None:
        if not isinstance(source, str) or not source.strip():
            raise ExpressionError(f"expected an expression, got {source!r}")
        self.source = source
        try:
            tree = ENV.parse("{{ (" + source + ") }}")
        except TemplateSyntaxError as exc:
            raise ExpressionError(f"invalid expression {source!r}: {_clean_error(exc)}") from None
        _static_check(tree, source)
        self.names = free_names(tree)
        self.fields_read = attribute_paths(tree, root)
        try:
            self._fn = ENV.from_string("{% set result = (" + source + ") %}")
        except TemplateSyntaxError as exc:
            raise ExpressionError(f"invalid expression {source!r}: {_clean_error(exc)}") from None
        output = tree.body[0]
        single = isinstance(output, nodes.Output) and len(output.nodes) == 1
        self._py = compile_python(output.nodes[0], HELPERS) if single else None  # type: ignore[attr-defined]

    def __call__(self, context: Mapping[str, Any]) -> Any:
        if self._py is not None:
            try:
                return self._py(context)
            except Exception:  # Fallback, or an error: Jinja gives the answer, and the message
                pass
        try:
            # A shared context over helpers + variables: Jinja's default would merge its globals
            # (a ChainMap) into a new dict on every call, which is most of an expression's cost.
            ctx = ENV.context_class(ENV, {**HELPERS, **context}, self._fn.name, self._fn.blocks)
            for _ in self._fn.root_render_func(ctx):
                pass
            value = ctx.vars.get("result")
            if isinstance(value, Undefined):
                value._fail_with_undefined_error()
            return value
        except SecurityError as exc:
            raise SandboxViolation(f"{self.source!r}: {exc}") from None
        except UndefinedError as exc:
            raise ExpressionError(f"{self.source!r}: {exc}") from None
        except Exception as exc:
            raise ExpressionError(f"{self.source!r}: {type(exc).__name__}: {exc}") from None

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


class Template:
    """A compiled value template. Plain strings pass through untouched."""

    __slots__ = ("_expr", "_tpl", "fields_read", "names", "source")

    def __init__(self, source: str, *, root: str = "record") -> None:
        self.source = source
        self._expr: Expression | None = None
        self._tpl = None
        self.names: set[str] = set()
        self.fields_read: list[str] = []
        if "{{" not in source and "{%" not in source:
            return
        m = _SINGLE_EXPR.match(source)
        if m:
            self._expr = Expression(m.group(1).strip(), root=root)
            self.names, self.fields_read = self._expr.names, self._expr.fields_read
            return
        try:
            tree = ENV.parse(source)
        except TemplateSyntaxError as exc:
            raise ExpressionError(f"invalid template {source!r}: {_clean_error(exc)}") from None
        _static_check(tree, source)
        self.names = free_names(tree)
        self.fields_read = attribute_paths(tree, root)
        self._tpl = ENV.from_string(source)

    @property
    def is_static(self) -> bool:
        return self._expr is None and self._tpl is None

    def render(self, context: Mapping[str, Any]) -> Any:
        if self._expr is not None:
            return self._expr(context)
        if self._tpl is None:
            return self.source
        try:
            return self._tpl.render(context)
        except SecurityError as exc:
            raise SandboxViolation(f"{self.source!r}: {exc}") from None
        except Exception as exc:
            raise ExpressionError(f"{self.source!r}: {type(exc).__name__}: {exc}") from None


def compile_value(value: Any, *, root: str = "record") -> Any:
    """Compile every string inside ``value`` (dicts/lists walked) into a :class:`Template`."""
    if isinstance(value, str):
        return Template(value, root=root)
    if isinstance(value, Mapping):
        return {k: compile_value(v, root=root) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [compile_value(v, root=root) for v in value]
    return value


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render what :func:`compile_value` produced."""
    if isinstance(value, Template):
        return value.render(context)
    if isinstance(value, dict):
        return {k: render_value(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    return value


def templates_in(value: Any) -> Iterable[Template]:
    if isinstance(value, Template):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from templates_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from templates_in(v)
