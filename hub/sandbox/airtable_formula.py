"""A small, real parser and evaluator for Airtable's ``filterByFormula`` (never ``eval()``).

It covers what CRM filters use — field references, literals, comparison, ``&`` and arithmetic,
the logical functions and the text/date functions that pyairtable's ``formulas`` module emits —
so connector code is tested against genuine formula semantics: blanks, truthiness (``0``, ``""``,
``FALSE()``, an empty list and errors filter a record out) and date comparison.

A formula is compiled once per request (:func:`compile_formula`); unknown fields and functions
are refused up front as Airtable does, with :class:`FormulaError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub.sandbox.airtable_functions import CONTEXT, EAGER, ERROR, arith, compare, to_number, to_text, truthy

Node = tuple[Any, ...]


class FormulaError(ValueError):
    """The formula cannot be parsed, or names a field or function that does not exist."""


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>\d+(?:\.\d+)?|\.\d+)
    | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<field>\{(?:[^}\\]|\\.)*\})
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>!=|<=|>=|=|<|>|&|\+|-|\*|/|\(|\)|,)
    )""",
    re.VERBOSE,
)
_UNESCAPE = re.compile(r"\\(.)")


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FormulaError(f"unexpected character {text[pos:].lstrip()[:1]!r} at position {pos}")
        kind = m.lastgroup or ""
        raw = m.group(kind)
        if kind in ("str", "field"):
            raw = _UNESCAPE.sub(r"\1", raw[1:-1])
        out.append((kind, raw))
        pos = m.end()
    return out


class _Parser:
    """Precedence, lowest first: comparison, ``&``, ``+ -``, ``* /``, unary minus."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.toks = tokens
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise FormulaError(f"expected {value or 'a value'}, got {tok[1] if tok else 'end of formula'}")
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.binary(0)
        if self.peek() is not None:
            raise FormulaError(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    _LEVELS: tuple[tuple[str, ...], ...] = (("=", "!=", "<", ">", "<=", ">="), ("&",), ("+", "-"), ("*", "/"))

    def binary(self, level: int) -> Node:
        if level == len(self._LEVELS):
            return self.unary()
        node = self.binary(level + 1)
        while (tok := self.peek()) is not None and tok[0] == "op" and tok[1] in self._LEVELS[level]:
            self.i += 1
            node = ("bin", tok[1], node, self.binary(level + 1))
        return node

    def unary(self) -> Node:
        tok = self.peek()
        if tok == ("op", "-"):
            self.i += 1
            return ("neg", self.unary())
        return self.primary()

    def primary(self) -> Node:
        kind, raw = self.take()
        if kind == "num":
            return ("lit", float(raw) if "." in raw else int(raw))
        if kind == "str":
            return ("lit", raw)
        if kind == "field":
            return ("field", raw)
        if kind == "op" and raw == "(":
            node = self.binary(0)
            self.take(")")
            return node
        if kind == "name":
            if self.peek() == ("op", "("):
                self.i += 1
                args: list[Node] = []
                if self.peek() != ("op", ")"):
                    args.append(self.binary(0))
                    while self.peek() == ("op", ","):
                        self.i += 1
                        args.append(self.binary(0))
                self.take(")")
                return ("call", raw.upper(), args)
            return ("field", raw)  # a bare one-word field name
        raise FormulaError(f"unexpected {raw!r}")


# -- evaluation -----------------------------------------------------------------------------------
@dataclass
class RowContext:
    """What a formula can see of one record: values by field name, plus its metadata."""

    values: Mapping[str, Any]
    record_id: str
    created: datetime
    modified: Callable[[list[str]], datetime]
    now: datetime


Lazy = Callable[[], Any]


class Formula:
    """A compiled formula: call :meth:`matches` per record."""

    def __init__(self, text: str, ast: Node, fields: set[str]) -> None:
        self.text = text
        self.ast = ast
        self.fields = fields

    def evaluate(self, row: RowContext) -> Any:
        return _eval(self.ast, row)

    def matches(self, row: RowContext) -> bool:
        try:
            return truthy(self.evaluate(row))
        except (ArithmeticError, ValueError, TypeError, OverflowError):
            return False  # a per-record error is #ERROR!, which filters the record out


def compile_formula(text: str, known_fields: Callable[[str], bool]) -> Formula:
    """Parse ``text``; every field reference must satisfy ``known_fields``."""
    if not text.strip():
        raise FormulaError("the formula is empty")
    ast = _Parser(_tokens(text)).parse()
    fields: set[str] = set()
    _check(ast, fields)
    unknown = sorted(f for f in fields if not known_fields(f))
    if unknown:
        raise FormulaError("Unknown field names: " + ", ".join(unknown))
    return Formula(text, ast, fields)


def _check(node: Node, fields: set[str]) -> None:
    kind = node[0]
    if kind == "field":
        fields.add(node[1])
    elif kind == "bin":
        _check(node[2], fields)
        _check(node[3], fields)
    elif kind == "neg":
        _check(node[1], fields)
    elif kind == "call":
        name, args = node[1], node[2]
        if name in EAGER:
            lo, hi = EAGER[name][0], EAGER[name][1]
        elif name in CONTEXT:
            lo, hi = CONTEXT[name]
        else:
            raise FormulaError(f"Unknown function {name}()")
        if len(args) < lo or (hi is not None and len(args) > hi):
            wanted = f"{lo}+" if hi is None else f"{lo}..{hi}"
            raise FormulaError(f"{name}() takes {wanted} argument(s), got {len(args)}")
        for arg in args:
            _check(arg, fields)


def _eval(node: Node, row: RowContext) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "field":
        return row.values.get(node[1])
    if kind == "neg":
        value = to_number(_eval(node[1], row))
        return ERROR if value is ERROR else -value  # type: ignore[operator]
    if kind == "bin":
        op, left, right = node[1], _eval(node[2], row), _eval(node[3], row)
        if op == "&":
            return to_text(left) + to_text(right)
        if op in "+-*/":
            return arith(op, left, right)
        return compare(op, left, right)
    name, args = node[1], node[2]
    if name in EAGER:
        return EAGER[name][2](*(_eval(a, row) for a in args))
    return _context_call(name, [lambda a=a: _eval(a, row) for a in args], args, row)


def _context_call(name: str, lazy: list[Lazy], args: list[Node], row: RowContext) -> Any:
    if name == "AND":
        return all(truthy(f()) for f in lazy)
    if name == "OR":
        return any(truthy(f()) for f in lazy)
    if name == "IF":
        if truthy(lazy[0]()):
            return lazy[1]()
        return lazy[2]() if len(lazy) > 2 else None
    if name == "SWITCH":
        subject, rest = lazy[0](), lazy[1:]
        for i in range(0, len(rest) - 1, 2):
            if compare("=", subject, rest[i]()) is True:
                return rest[i + 1]()
        return rest[-1]() if len(rest) % 2 else None
    if name == "RECORD_ID":
        return row.record_id
    if name == "CREATED_TIME":
        return row.created
    if name == "NOW":
        return row.now
    if name == "TODAY":
        return row.now.replace(hour=0, minute=0, second=0, microsecond=0)
    names = [a[1] for a in args if a[0] == "field"]  # LAST_MODIFIED_TIME({A}, {B})
    return row.modified(names)
