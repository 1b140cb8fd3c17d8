"""Config problems as an operator reads them: ``file:line:col: context → path: message``.

Pydantic's errors are translated here: unknown keys get the nearest valid name, missing keys are
named, and every message shows the bad value.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from hub.config.yamlsrc import Pos, locate


@dataclass(frozen=True)
class ConfigIssue:
    file: str
    line: int
    col: int
    message: str
    context: str = ""  # "rule 'welcome_lead'", "entity 'client'"
    path: str = ""  # "do[0]", "systems.airtable.fields.email"

    def __str__(self) -> str:
        head = f"{self.file}:{self.line}:{self.col}:"
        where = " → ".join(p for p in (self.context, self.path) if p)
        return f"{head} {where}: {self.message}" if where else f"{head} {self.message}"

    @classmethod
    def at(cls, pos: Pos | None, message: str, *, file: str = "", context: str = "", path: str = "") -> ConfigIssue:
        if pos is None:
            return cls(file, 1, 1, message, context, path)
        return cls(pos.file, pos.line, pos.col, message, context, path)


def suggest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when one choice is close enough, else empty."""
    match = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def format_path(path: Sequence[Any]) -> str:
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            out += ("." if out else "") + str(step)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _unwrap(tp: Any) -> list[Any]:
    """The concrete classes a (possibly Optional/Annotated/list/dict/union) annotation may hold."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(tp):
            out.extend(_unwrap(arg))
        return out
    if origin in (list, tuple, set, frozenset):
        args = typing.get_args(tp)
        return _unwrap(args[0]) if args else []
    if origin is dict:
        args = typing.get_args(tp)
        return _unwrap(args[1]) if len(args) == 2 else []
    return [tp]


def model_at(model: type[BaseModel], loc: Sequence[Any]) -> type[BaseModel] | None:
    """The model class that validated the object at ``loc`` (for naming its valid keys)."""
    current: type[BaseModel] | None = model
    for step in loc:
        if current is None:
            return None
        if isinstance(step, int):
            continue
        field = current.model_fields.get(step)
        if field is None:
            field = next((f for f in current.model_fields.values() if f.alias == step), None)
        if field is None:
            # a union tag or a dict key: stay on a model reachable from here if the name matches one
            continue
        candidates = [c for c in _unwrap(field.annotation) if isinstance(c, type) and issubclass(c, BaseModel)]
        if not candidates:
            return None
        current = candidates[0]
    return current


def keys_of(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def from_validation_error(
    exc: ValidationError,
    **kwargs: Any,
) -> list[ConfigIssue]:
    return from_errors(list(exc.errors(include_url=False)), **kwargs)


def from_errors(
    errors: Sequence[Any],
    *,
    root: Any,
    model: type[BaseModel],
    context: str = "",
    base_path: tuple[Any, ...] = (),
    file: str = "",
) -> list[ConfigIssue]:
    """Translate pydantic errors for ``root`` (validated by ``model``) into issues."""
    issues: list[ConfigIssue] = []
    for err in errors:
        loc = tuple(err["loc"])
        etype = err["type"]
        data_loc = _data_loc(root, loc)
        path = format_path((*base_path, *data_loc))
        bad = err.get("input")
        if etype == "extra_forbidden":
            key = data_loc[-1] if data_loc else loc[-1]
            owner = model_at(model, loc[:-1])
            valid = keys_of(owner) if owner else []
            msg = f"unknown key {key!r}{suggest(str(key), valid)}"
            if valid and not suggest(str(key), valid):
                msg += f"; expected one of {', '.join(valid)}"
            pos = locate(root, data_loc, key=True)
            issues.append(
                ConfigIssue.at(pos, msg, file=file, context=context, path=format_path((*base_path, *data_loc[:-1])))
            )
            continue
        if etype == "missing":
            msg = f"missing required key {loc[-1]!r}"
            pos = locate(root, data_loc[:-1])
            issues.append(
                ConfigIssue.at(pos, msg, file=file, context=context, path=format_path((*base_path, *data_loc[:-1])))
            )
            continue
        if etype == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            choices = [c.strip(" '\"") for c in expected.replace(" or ", ",").split(",") if c.strip()]
            msg = f"expected one of {expected}, got {_short(bad)}{suggest(str(bad), choices)}"
        elif etype.startswith("union_tag") or etype == "invalid_trigger":
            msg = err["msg"]
        elif etype in _PLAIN:
            msg = f"{_PLAIN[etype]}, got {_short(bad)}"
        elif etype == "value_error":
            msg = str(err.get("ctx", {}).get("error") or err["msg"]).removeprefix("Value error, ")
        else:
            msg = f"{err['msg'][0].lower()}{err['msg'][1:]}, got {_short(bad)}"
        pos = locate(root, data_loc)
        issues.append(ConfigIssue.at(pos, msg, file=file, context=context, path=path))
    return _dedupe(issues)


_PLAIN = {
    "int_parsing": "expected a whole number",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected text",
    "list_type": "expected a list",
    "dict_type": "expected a mapping (key: value)",
    "model_type": "expected a mapping (key: value)",
    "model_attributes_type": "expected a mapping (key: value)",
}


def _data_loc(root: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop the steps of ``loc`` that are union tags/model names rather than keys in the data."""
    out: list[Any] = []
    node = root
    for step in loc:
        in_dict = isinstance(node, dict) and step in node
        in_list = isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)
        if in_dict or in_list:
            out.append(step)
            node = node[step]
        elif isinstance(node, dict) and step == loc[-1]:
            out.append(step)  # a missing or unknown key at the end of the path
        # otherwise a tag like 'function-after[...]' or a discriminator value: skip it
    return tuple(out)


def _dedupe(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    seen: set[tuple[Any, ...]] = set()
    out = []
    for issue in issues:
        key = (issue.file, issue.line, issue.col, issue.message)
        if key not in seen:
            seen.add(key)
            out.append(issue)
    return out
