"""Rule expressions as plain Python: the common subset of the expression language, compiled once.

Rules and computed fields evaluate the same few shapes for every record: fields of a record
compared, combined and passed to the time helpers. Jinja runs them with a new context and a
generator per call, several times the cost of the expression itself. The subset here (constants,
names, ``record.field``, ``record['field']``, comparisons, ``and``/``or``/``not``, arithmetic,
``a if b else c``, ``is none``, lists, calls of the helpers) is turned into one Python function.

It never decides alone when in doubt: a missing name or field, a value that is not a plain dict,
a call of anything but a helper, or any error raises :class:`Fallback`, and the caller evaluates
the expression with Jinja, whose answer (or error message) is the authoritative one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import nodes

_OPS = {"eq": "==", "ne": "!=", "gt": ">", "gteq": ">=", "lt": "<", "lteq": "<=", "in": "in", "notin": "not in"}
_BINARY = {
    nodes.Add: "+",
    nodes.Sub: "-",
    nodes.Mul: "*",
    nodes.Div: "/",
    nodes.FloorDiv: "//",
    nodes.Mod: "%",
    nodes.Pow: "**",
}
_MISSING = object()


class Fallback(Exception):
    """The compiled form cannot answer exactly as Jinja would: ask Jinja."""


class _Unsupported(Exception):
    pass


def _name(ctx: Mapping[str, Any], helpers: Mapping[str, Any], name: str) -> Any:
    value = ctx.get(name, _MISSING)
    if value is _MISSING:
        value = helpers.get(name, _MISSING)
        if value is _MISSING:
            raise Fallback
    return value


def _field(obj: Any, name: Any) -> Any:
    """``obj.name`` / ``obj['name']`` on a plain dict (the sandbox's own fast path); else Jinja."""
    if type(obj) is dict:
        value = obj.get(name, _MISSING)
        if value is not _MISSING:
            return value
    raise Fallback


def _source(node: nodes.Node, helper_names: frozenset[str]) -> str:
    """Python source for ``node``, or _Unsupported."""
    if isinstance(node, nodes.Const):
        if node.value is None or type(node.value) in (bool, int, float, str):
            return repr(node.value)
        raise _Unsupported
    if isinstance(node, nodes.Name) and node.ctx == "load":
        return f"_name(c, h, {node.name!r})"
    if isinstance(node, nodes.Getattr):
        return f"_field({_source(node.node, helper_names)}, {node.attr!r})"
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and type(node.arg.value) is str:
        return f"_field({_source(node.node, helper_names)}, {node.arg.value!r})"
    if isinstance(node, nodes.Compare):
        parts = [_source(node.expr, helper_names)]
        for op in node.ops:
            if op.op not in _OPS:
                raise _Unsupported
            parts += [_OPS[op.op], _source(op.expr, helper_names)]
        return "(" + " ".join(parts) + ")"
    if isinstance(node, nodes.And | nodes.Or):
        word = "and" if isinstance(node, nodes.And) else "or"
        return f"({_source(node.left, helper_names)} {word} {_source(node.right, helper_names)})"
    if isinstance(node, nodes.Not):
        return f"(not {_source(node.node, helper_names)})"
    if type(node) in _BINARY:
        left, right = _source(node.left, helper_names), _source(node.right, helper_names)  # type: ignore[attr-defined]
        return f"({left} {_BINARY[type(node)]} {right})"
    if isinstance(node, nodes.Neg | nodes.Pos):
        return f"({'-' if isinstance(node, nodes.Neg) else '+'}{_source(node.node, helper_names)})"
    if isinstance(node, nodes.CondExpr) and node.expr2 is not None:
        test, yes, no = (_source(n, helper_names) for n in (node.test, node.expr1, node.expr2))
        return f"({yes} if {test} else {no})"
    if isinstance(node, nodes.Test) and node.name == "none" and not (node.args or node.kwargs):
        return f"({_source(node.node, helper_names)} is None)"
    if isinstance(node, nodes.List | nodes.Tuple):
        items = ", ".join(_source(n, helper_names) for n in node.items)
        return f"[{items}]" if isinstance(node, nodes.List) else f"({items},)"
    if (
        isinstance(node, nodes.Call)
        and isinstance(node.node, nodes.Name)
        and node.node.name in helper_names
        and not (node.kwargs or node.dyn_args or node.dyn_kwargs)
    ):
        args = ", ".join(_source(n, helper_names) for n in node.args)
        return f"_call({_source(node.node, helper_names)}, {args})"
    raise _Unsupported


def compile_python(
    node: nodes.Node, helpers: Mapping[str, Callable[..., Any]]
) -> Callable[[Mapping[str, Any]], Any] | None:
    """A function of the context evaluating ``node`` (an expression), or None when it leaves the subset."""
    helper_ids = {id(f) for f in helpers.values()}

    def call(fn: Any, *args: Any) -> Any:
        if id(fn) not in helper_ids:  # a context value shadowing a helper: the sandbox decides
            raise Fallback
        return fn(*args)

    try:
        body = _source(node, frozenset(helpers))
    except _Unsupported:
        return None
    scope: dict[str, Any] = {"_name": _name, "_field": _field, "_call": call, "h": helpers}
    exec(compile(f"def expression(c):\n    return {body}\n", "<expression>", "exec"), scope)
    return scope["expression"]  # type: ignore[no-any-return]
