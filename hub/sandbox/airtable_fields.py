"""Field types of the Airtable stand-in: options checked when a field is created, cell values
checked and normalised on every write, and converted for formulas on read.

Cells are stored in Airtable's JSON cell format (``cellFormat=json``): text as ``str``, numbers,
``true`` for a ticked checkbox, ``"YYYY-MM-DD"`` dates, ``"…T…000Z"`` date-times, select names
and lists of record ids. Empty values (``""``, ``[]``, unticked) are not stored, as Airtable omits
them from responses. Without ``typecast`` a value of the wrong shape is refused with Airtable's
``INVALID_VALUE_FOR_COLUMN``; with it, text is parsed and missing select options are created.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hub.sandbox.common import new_id

TEXT_TYPES = frozenset({"singleLineText", "multilineText", "richText", "email", "url", "phoneNumber"})
NUMBER_TYPES = frozenset({"number", "currency", "percent"})
TIME_TYPES = frozenset({"createdTime", "lastModifiedTime"})
CREATABLE = (
    TEXT_TYPES
    | NUMBER_TYPES
    | TIME_TYPES
    | {
        "checkbox",
        "date",
        "dateTime",
        "singleSelect",
        "multipleSelects",
        "multipleRecordLinks",
    }
)
COMPUTED = TIME_TYPES | {
    "autoNumber",
    "formula",
    "rollup",
    "count",
    "multipleLookupValues",
    "createdBy",
    "lastModifiedBy",
    "button",
}
NOT_PRIMARY = frozenset({"checkbox", "singleSelect", "multipleSelects", "multipleRecordLinks"})

DATE_FORMATS = {"local": "l", "friendly": "LL", "us": "M/D/YYYY", "european": "D/M/YYYY", "iso": "YYYY-MM-DD"}
TIME_FORMATS = {"12hour": "h:mma", "24hour": "HH:mm"}
BRIGHT = ("blue", "cyan", "teal", "green", "yellow", "orange", "red", "pink", "purple", "gray")
CHOICE_COLORS = tuple(f"{hue}{shade}" for shade in ("Light2", "Light1", "Bright", "Dark1") for hue in BRIGHT)
CHECKBOX_ICONS = frozenset({"check", "xCheckbox", "star", "heart", "thumbsUp", "flag", "dot"})


class AirtableError(Exception):
    """An error the stand-in answers with Airtable's ``{"error": {"type", "message"}}`` body."""

    def __init__(self, status: int, type_: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message


def invalid_options(field_name: str, detail: str) -> AirtableError:
    return AirtableError(
        422,
        "INVALID_FIELD_TYPE_OPTIONS_FOR_CREATE",
        f"Invalid options for {field_name}: Failed schema validation: {detail}",
    )


def _date_format(name: str, options: dict[str, Any], key: str, formats: dict[str, str]) -> dict[str, str]:
    raw = options.get(key)
    if not isinstance(raw, dict) or raw.get("name") not in formats:
        raise invalid_options(name, f"options.{key}.name must be one of {sorted(formats)}")
    return {"name": raw["name"], "format": formats[raw["name"]]}


def _time_zone(name: str, options: dict[str, Any]) -> str:
    tz = options.get("timeZone")
    if not isinstance(tz, str) or not (tz in ("utc", "client") or "/" in tz):
        raise invalid_options(name, f'options.timeZone must be "utc", "client" or an IANA name, got {tz!r}')
    return tz


def datetime_result() -> dict[str, Any]:
    return {
        "type": "dateTime",
        "options": {
            "dateFormat": {"name": "iso", "format": "YYYY-MM-DD"},
            "timeFormat": {"name": "24hour", "format": "HH:mm"},
            "timeZone": "utc",
        },
    }


def choices(raw: Any, name: str, existing: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Select choices with ids and colours; ``existing`` keeps ids of choices already there."""
    if not isinstance(raw, list):
        raise invalid_options(name, "options.choices must be a list")
    by_name = {c["name"]: c for c in existing or []}
    by_id = {c["id"]: c for c in existing or []}
    out: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise invalid_options(name, f"options.choices[{i}].name must be a non-empty string")
        old = by_id.get(item.get("id", "")) or by_name.get(item["name"])
        color = item.get("color") or (old or {}).get("color") or CHOICE_COLORS[len(out) % len(CHOICE_COLORS)]
        if color not in CHOICE_COLORS:
            raise invalid_options(name, f"options.choices[{i}].color {color!r} is not a select colour")
        out.append({"id": old["id"] if old else new_id("sel"), "name": item["name"], "color": color})
    return out


def build_field(spec: Any, tables: Callable[[str], bool]) -> dict[str, Any]:
    """Check a create-field request (``tables`` tells whether a linked table id exists) and return
    the field as stored and served by the schema API."""
    if not isinstance(spec, dict):
        raise AirtableError(422, "INVALID_REQUEST_UNKNOWN", "Invalid request: a field must be an object")
    name, type_ = spec.get("name"), spec.get("type")
    if not isinstance(name, str) or not name.strip():
        raise AirtableError(422, "DUPLICATE_OR_EMPTY_FIELD_NAME", "Field names must be non-empty and unique")
    if type_ not in CREATABLE:
        raise AirtableError(422, "INVALID_FIELD_TYPE", f"Unsupported field type for {name}: {type_!r}")
    options = spec.get("options")
    if options is not None and not isinstance(options, dict):
        raise invalid_options(name, "options must be an object")
    opts: dict[str, Any] = dict(options or {})
    out: dict[str, Any] = {"id": new_id("fld"), "name": name.strip(), "type": type_}
    if isinstance(spec.get("description"), str) and spec["description"]:
        out["description"] = spec["description"]
    if type_ in TEXT_TYPES:
        if opts:
            raise invalid_options(name, f"options is not included in the {name}.(type={type_}) schema")
        return out
    if type_ in NUMBER_TYPES:
        precision = opts.get("precision")
        if not isinstance(precision, int) or isinstance(precision, bool) or not 0 <= precision <= 8:
            raise invalid_options(name, "options.precision must be an integer from 0 to 8")
        out["options"] = {"precision": precision}
        if type_ == "currency":
            if not isinstance(opts.get("symbol"), str) or not opts["symbol"]:
                raise invalid_options(name, "options.symbol is missing")
            out["options"]["symbol"] = opts["symbol"]
    elif type_ == "checkbox":
        if opts.get("icon") not in CHECKBOX_ICONS or opts.get("color") not in {f"{h}Bright" for h in BRIGHT}:
            raise invalid_options(name, "options.icon and options.color (a *Bright colour) are required")
        out["options"] = {"icon": opts["icon"], "color": opts["color"]}
    elif type_ == "date":
        out["options"] = {"dateFormat": _date_format(name, opts, "dateFormat", DATE_FORMATS)}
    elif type_ == "dateTime":
        out["options"] = {
            "dateFormat": _date_format(name, opts, "dateFormat", DATE_FORMATS),
            "timeFormat": _date_format(name, opts, "timeFormat", TIME_FORMATS),
            "timeZone": _time_zone(name, opts),
        }
    elif type_ in ("singleSelect", "multipleSelects"):
        out["options"] = {"choices": choices(opts.get("choices"), name)}
    elif type_ == "multipleRecordLinks":
        linked = opts.get("linkedTableId")
        if set(opts) != {"linkedTableId"} or not isinstance(linked, str) or not tables(linked):
            raise invalid_options(name, "options must hold only linkedTableId, a table of this base")
        out["options"] = {"linkedTableId": linked, "isReversed": False, "prefersSingleRecordLink": False}
    elif type_ == "lastModifiedTime":
        out["options"] = {"isValid": True, "referencedFieldIds": [], "result": datetime_result()}
    else:  # createdTime
        out["options"] = {"result": datetime_result()}
    return out


# -- cell values ----------------------------------------------------------------------------------
def _bad_value(field: dict[str, Any]) -> AirtableError:
    message = f'Field "{field["name"]}" cannot accept the provided value'
    return AirtableError(422, "INVALID_VALUE_FOR_COLUMN", message)


def iso_datetime(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_when(text: str) -> datetime | None:
    raw = text.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _number(field: dict[str, Any], value: Any, typecast: bool) -> float | int:
    if typecast and isinstance(value, str):
        try:
            value = float(value.replace(",", "").strip())
        except ValueError:
            raise _bad_value(field) from None
        value = int(value) if value.is_integer() and field["options"]["precision"] == 0 else value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad_value(field)
    return value


def _checkbox(field: dict[str, Any], value: Any, typecast: bool) -> bool:
    if isinstance(value, bool):
        return value
    if typecast and isinstance(value, (int, float)):
        return bool(value)
    if typecast and isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1", "yes", "on", "checked", "x"):
            return True
        if text in ("false", "0", "no", "off", "unchecked", ""):
            return False
    raise _bad_value(field)


def write_cell(
    field: dict[str, Any],
    value: Any,
    typecast: bool,
    record_exists: Callable[[str, str], bool],
) -> tuple[Any, list[str]]:
    """The stored form of ``value`` (``None`` clears the cell) and select options to create."""
    type_ = field["type"]
    if type_ in COMPUTED:
        raise AirtableError(
            422,
            "INVALID_VALUE_FOR_COLUMN",
            f'Field "{field["name"]}" cannot accept a value because the field is computed',
        )
    if value is None:
        return None, []
    if type_ in TEXT_TYPES:
        if typecast and isinstance(value, (int, float, bool)):
            value = str(value)
        if not isinstance(value, str):
            raise _bad_value(field)
        return (value or None), []
    if type_ in NUMBER_TYPES:
        return _number(field, value, typecast), []
    if type_ == "checkbox":
        return (_checkbox(field, value, typecast) or None), []
    if type_ in ("date", "dateTime"):
        when = parse_when(value) if isinstance(value, str) else None
        if when is None:
            raise _bad_value(field)
        return (when.date().isoformat() if type_ == "date" else iso_datetime(when)), []
    if type_ == "singleSelect":
        if typecast and isinstance(value, (int, float)):
            value = str(value)
        if not isinstance(value, str):
            raise _bad_value(field)
        picked = [value] if value else []
        return (_pick(field, picked, typecast) or [None])[0], _missing(field, picked)
    if type_ == "multipleSelects":
        if typecast and isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _bad_value(field)
        names = list(dict.fromkeys(value))
        return (_pick(field, names, typecast) or None), _missing(field, names)
    # multipleRecordLinks
    if typecast and isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad_value(field)
    linked = field["options"]["linkedTableId"]
    for rec in value:
        if not record_exists(linked, rec):
            raise AirtableError(422, "ROW_DOES_NOT_EXIST", f"Record ID {rec} does not exist in {linked}")
    return (list(dict.fromkeys(value)) or None), []


def _missing(field: dict[str, Any], names: list[str]) -> list[str]:
    known = {c["name"] for c in field["options"]["choices"]}
    return [n for n in names if n not in known]


def _pick(field: dict[str, Any], names: list[str], typecast: bool) -> list[str]:
    missing = _missing(field, names)
    if missing and not typecast:
        raise AirtableError(
            422,
            "INVALID_MULTIPLE_CHOICE_OPTIONS",
            f'Insufficient permissions to create new select option ""{missing[0]}""',
        )
    return names


def add_choices(field: dict[str, Any], names: list[str]) -> None:
    """Create select options (a typecast write did)."""
    current = field["options"]["choices"]
    for name in names:
        if name not in {c["name"] for c in current}:
            current.append({"id": new_id("sel"), "name": name, "color": CHOICE_COLORS[len(current) % 40]})


def formula_value(field: dict[str, Any], stored: Any) -> Any:
    """A stored cell as the formula sandbox sees it (dates become instants)."""
    if stored is None:
        return None
    if field["type"] in ("date", "dateTime", *TIME_TYPES) and isinstance(stored, str):
        return parse_when(stored)
    return stored
