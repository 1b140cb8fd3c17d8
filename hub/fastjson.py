"""JSON for the hot paths (job arguments, history, decisions, fingerprints): orjson's speed with
the stdlib's verdicts.

orjson refuses integers beyond 64 bits, which JSON allows, so those go through :mod:`json`; it
writes NaN as null where :mod:`json` would write an invalid ``NaN``. Reading falls back to
:mod:`json` for what only it accepts (``NaN``, ``Infinity``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

# Dates and dataclasses are refused unless ``default`` converts them, as json does.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS


def dumps(obj: Any, *, default: Callable[[Any], Any] | None = None, sort_keys: bool = False) -> bytes:
    """Compact UTF-8 JSON (no ASCII escaping), keys sorted if asked."""
    option = _OPTIONS | orjson.OPT_SORT_KEYS if sort_keys else _OPTIONS
    try:
        return orjson.dumps(obj, default=default, option=option)
    except TypeError:
        text = json.dumps(
            obj, default=default, allow_nan=False, ensure_ascii=False, sort_keys=sort_keys, separators=(",", ":")
        )
        return text.encode()


def loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
