"""``${NAME}`` references in YAML strings, resolved from the environment at load time.

Secrets and ids never live in YAML. ``${NAME:-fallback}`` gives a non-secret default (the
sandbox's base id, say). A missing variable is reported with the file and line that wanted it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from hub.config.yamlsrc import Pos, PosDict, PosList

_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def substitute(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """Return ``text`` with references replaced, and the names that were missing."""
    missing: list[str] = []

    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        value = env.get(name)
        if value not in (None, ""):
            return str(value)
        if default is not None:
            return default
        missing.append(name)
        return m.group(0)

    return _REF.sub(repl, text), missing


def references(text: str) -> list[str]:
    return [m.group(1) for m in _REF.finditer(text)]


def expand(
    node: Any,
    env: Mapping[str, str],
    report: Callable[[Pos | None, tuple[Any, ...], str], None],
    path: tuple[Any, ...] = (),
) -> Any:
    """Substitute references throughout ``node`` in place; report each missing variable."""
    if isinstance(node, PosDict):
        for key in list(node):
            value = node[key]
            if isinstance(value, str):
                new, missing = substitute(value, env)
                for name in missing:
                    report(node.vpos.get(key), (*path, key), f"environment variable {name} is not set")
                node[key] = new
            else:
                expand(value, env, report, (*path, key))
    elif isinstance(node, PosList):
        for i, value in enumerate(node):
            if isinstance(value, str):
                new, missing = substitute(value, env)
                for name in missing:
                    report(node.ipos[i], (*path, i), f"environment variable {name} is not set")
                node[i] = new
            else:
                expand(value, env, report, (*path, i))
    return node
