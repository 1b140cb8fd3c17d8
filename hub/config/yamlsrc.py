"""YAML that remembers where everything came from.

Mappings load as :class:`PosDict` and sequences as :class:`PosList`: plain ``dict``/``list``
subclasses carrying the file and the 1-based line/column of each key and value, so an error found
later (by pydantic, by a cross-check, at run time) can say ``rules.yaml:14:9``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Pos:
    file: str
    line: int  # 1-based
    col: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class PosDict(dict[str, Any]):
    """A mapping plus where each key (``kpos``) and value (``vpos``) was written."""

    pos: Pos
    kpos: dict[str, Pos]
    vpos: dict[str, Pos]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kpos = {}
        self.vpos = {}


class PosList(list[Any]):
    """A sequence plus where each item was written."""

    pos: Pos
    ipos: list[Pos]

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.ipos = []


class YamlSyntaxError(Exception):
    def __init__(self, pos: Pos, message: str) -> None:
        super().__init__(f"{pos}: {message}")
        self.pos = pos
        self.message = message


def _pos(file: str, node: yaml.Node) -> Pos:
    return Pos(file, node.start_mark.line + 1, node.start_mark.column + 1)


class _Loader(yaml.SafeLoader):
    """SafeLoader building position-aware containers; duplicate keys are an error."""

    filename = "<string>"


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> PosDict:
    explicit = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
    loader.flatten_mapping(node)
    out = PosDict()
    out.pos = _pos(loader.filename, node)
    merged: set[str] = set()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            key = str(key)
        if id(key_node) not in explicit:
            merged.add(key)
        elif key in merged:
            merged.discard(key)  # an explicit key overrides what `<<:` brought in
        elif key in out:
            first = out.kpos[key]
            raise YamlSyntaxError(
                _pos(loader.filename, key_node), f"duplicate key {key!r} (first defined at line {first.line})"
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.kpos[key] = _pos(loader.filename, key_node)
        out.vpos[key] = _pos(loader.filename, value_node)
    return out


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> PosList:
    out = PosList(loader.construct_object(child, deep=True) for child in node.value)
    out.pos = _pos(loader.filename, node)
    out.ipos = [_pos(loader.filename, child) for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)
# YAML 1.1 would turn `on`/`off`/`yes`/`no` into booleans: surprising for an operator writing a
# status named "on". Keep only true/false as booleans.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    __import__("re").compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def load_text(text: str, filename: str) -> Any:
    """Parse ``text``; syntax errors become :class:`YamlSyntaxError` with a position."""

    class Loader(_Loader):
        pass

    Loader.filename = filename
    try:
        return yaml.load(text, Loader=Loader)
    except YamlSyntaxError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Pos(filename, mark.line + 1, mark.column + 1) if mark else Pos(filename, 1, 1)
        raise YamlSyntaxError(pos, f"invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(Pos(filename, 1, 1), f"invalid YAML: {exc}") from None


def load_file(path: Path, display: str | None = None) -> Any:
    return load_text(path.read_text(encoding="utf-8"), display or path.name)


def locate(root: Any, path: tuple[Any, ...], *, key: bool = False) -> Pos | None:
    """Best position for ``path`` inside ``root``: the value's (or the key's, with ``key``),
    else the deepest enclosing node that has one."""
    node = root
    best: Pos | None = getattr(root, "pos", None)
    for i, step in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, PosDict) and isinstance(step, str) and step in node:
            here = node.kpos[step] if (key and last) else node.vpos[step]
            best = here
            node = node[step]
        elif isinstance(node, PosList) and isinstance(step, int) and 0 <= step < len(node):
            best = node.ipos[step]
            node = node[step]
        elif isinstance(node, PosDict) and isinstance(step, str):
            # A key pydantic expected but that is missing: point at the mapping itself.
            return getattr(node, "pos", best)
        else:
            continue  # union/tag steps that are not in the data
    return best
