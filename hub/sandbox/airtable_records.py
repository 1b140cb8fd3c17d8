"""Records of the Airtable stand-in: list (filter, sort, fields, pages), create, update, upsert
and delete, with Airtable's batch limits and errors. Mixed into :class:`AirtableStandIn`.

A write request is validated whole before anything changes (Airtable applies a batch
atomically), then applied; what changed is handed to :meth:`emit_changes` for webhooks.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hub.sandbox.airtable_fields import (
    COMPUTED,
    AirtableError,
    add_choices,
    formula_value,
    parse_when,
    write_cell,
)
from hub.sandbox.airtable_formula import FormulaError, RowContext, compile_formula
from hub.sandbox.airtable_functions import to_text
from hub.sandbox.common import iso_now, new_id

MAX_BATCH = 10
MAX_PAGE = 100
ITERATOR_TTL = 300.0  # seconds an offset stays usable, like Airtable's list iterators

Table = dict[str, Any]


def not_found_model() -> AirtableError:
    return AirtableError(
        403,
        "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND",
        "Invalid permissions, or the requested model was not found. Check that both your user and your token "
        "have the required permissions, and that the model names and/or ids are correct.",
    )


def record_not_found() -> AirtableError:
    return AirtableError(404, "MODEL_ID_NOT_FOUND", "Record not found")


def unknown_field(name: str) -> AirtableError:
    return AirtableError(422, "UNKNOWN_FIELD_NAME", f'Unknown field name: "{name}"')


def bad_request(detail: str) -> AirtableError:
    return AirtableError(
        422,
        "INVALID_REQUEST_UNKNOWN",
        f"Invalid request: parameter validation failed. Check your request data. ({detail})",
    )


class RecordOps:
    """Record endpoints over ``self.state`` (see :mod:`hub.sandbox.airtable` for its layout)."""

    state: dict[str, Any]
    lock: threading.RLock
    _iterators: dict[str, tuple[list[str], float]]

    emit_changes: Callable[[str, Table, dict[str, Any]], None]  # from HookOps

    # -- lookups ---------------------------------------------------------------------------------
    def base(self, base_id: str) -> dict[str, Any]:
        base = self.state["bases"].get(base_id)
        if base is None:
            raise not_found_model()
        return base

    def table(self, base_id: str, id_or_name: str) -> Table:
        base = self.base(base_id)
        tables = [self.state["tables"][t] for t in base["tables"]]
        for t in tables:
            if t["id"] == id_or_name:
                return t
        for t in tables:
            if t["name"] == id_or_name:
                return t
        raise not_found_model()

    @staticmethod
    def field(table: Table, key: str) -> dict[str, Any]:
        for f in table["fields"]:
            if f["id"] == key or f["name"] == key:
                return f
        raise unknown_field(key)

    def record_exists(self, table_id: str, record_id: str) -> bool:
        table = self.state["tables"].get(table_id)
        return table is not None and record_id in table["records"]

    # -- reading ---------------------------------------------------------------------------------
    @staticmethod
    def modified_at(table: Table, rec: dict[str, Any], names: list[str] | None = None) -> str:
        wanted = {RecordOps.field(table, n)["id"] for n in names} if names else None
        stamps = [t for fid, t in rec["modified"].items() if wanted is None or fid in wanted]
        return max(stamps, default=rec["createdTime"])

    def cell(self, table: Table, rec: dict[str, Any], f: dict[str, Any]) -> Any:
        if f["type"] == "createdTime":
            return rec["createdTime"]
        if f["type"] == "lastModifiedTime":
            return self.modified_at(table, rec, list(f["options"].get("referencedFieldIds") or []) or None)
        return rec["cells"].get(f["id"])

    def render(
        self,
        table: Table,
        rec_id: str,
        *,
        by_id: bool = False,
        only: set[str] | None = None,
        as_string: bool = False,
    ) -> dict[str, Any]:
        rec = table["records"][rec_id]
        fields: dict[str, Any] = {}
        for f in table["fields"]:
            if only is not None and f["id"] not in only:
                continue
            value = self.cell(table, rec, f)
            if value is not None:
                fields[f["id"] if by_id else f["name"]] = to_text(value) if as_string else value
        return {"id": rec_id, "createdTime": rec["createdTime"], "fields": fields}

    def row(self, table: Table, rec_id: str) -> RowContext:
        rec = table["records"][rec_id]
        values: dict[str, Any] = {}
        for f in table["fields"]:
            values[f["name"]] = values[f["id"]] = formula_value(f, self.cell(table, rec, f))
        return RowContext(
            values=values,
            record_id=rec_id,
            created=parse_when(rec["createdTime"]) or datetime.now(UTC),
            modified=lambda names: parse_when(self.modified_at(table, rec, names)),  # type: ignore[arg-type,return-value]
            now=datetime.now(UTC),
        )

    def list_records(self, base_id: str, table_key: str, q: dict[str, Any]) -> dict[str, Any]:
        """``q`` holds the list parameters, already taken from the query string or the POST body."""
        table = self.table(base_id, table_key)
        page_size = _int_param(q.get("pageSize"), "pageSize", 1, MAX_PAGE, MAX_PAGE)
        by_id = bool(q.get("returnFieldsByFieldId"))
        only = {self.field(table, k)["id"] for k in q["fields"]} if q.get("fields") is not None else None
        as_string = q.get("cellFormat") == "string"
        if q.get("cellFormat") not in (None, "json", "string"):
            raise bad_request(f"cellFormat must be json or string, got {q['cellFormat']!r}")
        if as_string and not (q.get("timeZone") and q.get("userLocale")):
            raise bad_request("cellFormat=string needs timeZone and userLocale")
        if q.get("view") and not any(q["view"] in (v["id"], v["name"]) for v in table["views"]):
            raise AirtableError(422, "VIEW_NAME_NOT_FOUND", f'Could not find view "{q["view"]}" in table')
        offset = q.get("offset")
        if offset:
            ids, start = self._resume(str(offset))
        else:
            ids, start = self._query(table, q), 0
        page = [i for i in ids[start : start + page_size] if i in table["records"]]
        out: dict[str, Any] = {
            "records": [self.render(table, i, by_id=by_id, only=only, as_string=as_string) for i in page]
        }
        if "commentCount" in (q.get("recordMetadata") or []):
            for r in out["records"]:
                r["commentCount"] = 0
        if start + page_size < len(ids):
            out["offset"] = self._remember(ids, start + page_size, offset)
        return out

    def _query(self, table: Table, q: dict[str, Any]) -> list[str]:
        records = table["records"]
        ids = sorted(records, key=lambda i: records[i]["seq"])  # creation order (JSON keys get sorted)
        text = q.get("filterByFormula")
        if text:
            known = {f["name"] for f in table["fields"]} | {f["id"] for f in table["fields"]}
            try:
                formula = compile_formula(str(text), known.__contains__)
            except FormulaError as exc:
                detail = str(exc)
                if not detail.startswith("Unknown field names"):
                    detail = f"Invalid formula. Please check your formula text. ({detail})"
                message = f"The formula for filtering records is invalid: {detail}"
                raise AirtableError(422, "INVALID_FILTER_BY_FORMULA", message) from None
            ids = [i for i in ids if formula.matches(self.row(table, i))]
        for spec in reversed(q.get("sort") or []):
            if not isinstance(spec, dict) or "field" not in spec:
                raise bad_request("each sort entry needs a field")
            f = self.field(table, str(spec["field"]))
            direction = spec.get("direction", "asc")
            if direction not in ("asc", "desc"):
                raise bad_request(f"sort direction must be asc or desc, got {direction!r}")
            ids.sort(
                key=lambda i, f=f: _sort_key(self.cell(table, table["records"][i], f)), reverse=direction == "desc"
            )
        limit = q.get("maxRecords")
        if limit is not None:
            ids = ids[: _int_param(limit, "maxRecords", 0, None, 0)]
        return ids

    def _remember(self, ids: list[str], position: int, previous: str | None) -> str:
        token = previous.split("/", 1)[0] if previous else "itr" + secrets.token_hex(7)
        now = time.monotonic()
        for key, (_, seen) in list(self._iterators.items()):
            if now - seen > ITERATOR_TTL:
                del self._iterators[key]
        self._iterators[token] = (ids, now)
        return f"{token}/{ids[position]}"

    def _resume(self, offset: str) -> tuple[list[str], int]:
        token, _, rec_id = offset.partition("/")
        entry = self._iterators.get(token)
        if entry is None or time.monotonic() - entry[1] > ITERATOR_TTL or rec_id not in entry[0]:
            raise AirtableError(
                422,
                "LIST_RECORDS_ITERATOR_NOT_AVAILABLE",
                "Iteration timed out or the offset is unknown. Please restart the iteration.",
            )
        return entry[0], entry[0].index(rec_id)

    # -- writing ---------------------------------------------------------------------------------
    def _cells(self, table: Table, fields: Any, typecast: bool) -> tuple[dict[str, Any], dict[str, list]]:
        """Validate a ``fields`` object: stored values by field id, and select options to add."""
        if not isinstance(fields, dict):
            raise AirtableError(
                422, "INVALID_REQUEST_MISSING_FIELDS", 'Could not find field "fields" in the request body'
            )
        cells: dict[str, Any] = {}
        new_choices: dict[str, list[str]] = {}
        for key, value in fields.items():
            f = self.field(table, key)
            cells[f["id"]], missing = write_cell(f, value, typecast, self.record_exists)
            if missing:
                new_choices.setdefault(f["id"], []).extend(missing)
        return cells, new_choices

    def write_records(
        self, base_id: str, table_key: str, method: str, body: Any, record_id: str | None = None
    ) -> dict[str, Any]:
        """POST (create), PATCH/PUT (update, ``performUpsert``) on the table or one record."""
        table = self.table(base_id, table_key)
        if not isinstance(body, dict):
            raise AirtableError(
                422, "INVALID_REQUEST_MISSING_FIELDS", 'Could not find field "fields" in the request body'
            )
        typecast = bool(body.get("typecast"))
        single = "records" not in body
        items = [{"id": record_id, "fields": body.get("fields")}] if single else body["records"]
        if method == "POST" and record_id is not None:
            raise AirtableError(404, "NOT_FOUND", "Could not find what you are looking for")
        if not isinstance(items, list) or not items or len(items) > MAX_BATCH:
            count = len(items) if isinstance(items, list) else 0
            if method == "POST" and count > MAX_BATCH:
                msg = f"A maximum of 10 records can be created per request but you have provided {count}."
            else:
                msg = (
                    'You must provide an array of up to 10 record objects, each with an "id" ID field '
                    'and a "fields" object for cell values.'
                )
            raise AirtableError(422, "INVALID_RECORDS", msg)
        merge = self._merge_fields(table, body.get("performUpsert"), method, single)
        plans: list[tuple[str | None, dict[str, Any]]] = []
        choices: dict[str, list[str]] = {}
        index = self._index(table, merge) if merge else {}
        for n, item in enumerate(items):
            if not isinstance(item, dict):
                raise AirtableError(422, "INVALID_RECORDS", f"records[{n}] must be an object")
            cells, more = self._cells(table, item.get("fields"), typecast)
            for fid, names in more.items():
                choices.setdefault(fid, []).extend(names)
            target = item.get("id") if method != "POST" else None
            if method != "POST" and target is None:
                if merge is None:
                    raise AirtableError(422, "INVALID_RECORDS", f'records[{n}] is missing its "id"')
                target = self._match(table, merge, cells, n, index)
            elif target is not None and target not in table["records"]:
                if single:
                    raise record_not_found()
                message = f"Record ID {target} does not exist in this table"
                raise AirtableError(422, "ROW_DOES_NOT_EXIST", message)
            plans.append((target, cells))
        for fid, names in choices.items():
            add_choices(self.field(table, fid), names)
        return self._apply(
            base_id, table, plans, method == "PUT", single, merge is not None, bool(body.get("returnFieldsByFieldId"))
        )

    def _merge_fields(self, table: Table, upsert: Any, method: str, single: bool) -> list[str] | None:
        if upsert is None:
            return None
        keys = upsert.get("fieldsToMergeOn") if isinstance(upsert, dict) else None
        if method == "POST" or single or not isinstance(keys, list) or not 1 <= len(keys) <= 3:
            raise bad_request("performUpsert needs a batch PATCH/PUT and 1 to 3 fieldsToMergeOn")
        fields = [self.field(table, str(k)) for k in keys]
        for f in fields:
            if f["type"] in COMPUTED:
                raise bad_request(f"fieldsToMergeOn cannot use the computed field {f['name']!r}")
        return [f["id"] for f in fields]

    @staticmethod
    def _index(table: Table, merge: list[str]) -> dict[tuple[Any, ...], list[str]]:
        index: dict[tuple[Any, ...], list[str]] = {}
        for rid, rec in table["records"].items():
            index.setdefault(tuple(_comparable(rec["cells"].get(fid)) for fid in merge), []).append(rid)
        return index

    def _match(
        self, table: Table, merge: list[str], cells: dict[str, Any], n: int, index: dict[tuple[Any, ...], list[str]]
    ) -> str:
        """The existing record an upsert updates, or a placeholder for one this request creates
        (a later record of the same request with the same key then updates it)."""
        if any(fid not in cells for fid in merge):
            names = [self.field(table, fid)["name"] for fid in merge]
            raise bad_request(f"records[{n}] must include every fieldsToMergeOn field {names}")
        hits = index.setdefault(tuple(_comparable(cells[fid]) for fid in merge), [])
        if len(hits) > 1:
            names = [self.field(table, fid)["name"] for fid in merge]
            raise bad_request(
                f"{len(hits)} records match the fieldsToMergeOn values {names} of records[{n}]; "
                "an upsert can update only one"
            )
        if not hits:
            hits.append(f"new:{n}")
        return hits[0]

    def _apply(
        self,
        base_id: str,
        table: Table,
        plans: list[tuple[str | None, dict[str, Any]]],
        replace: bool,
        single: bool,
        upsert: bool,
        by_id: bool,
    ) -> dict[str, Any]:
        now = iso_now()
        created: dict[str, Any] = {}
        changed: dict[str, Any] = {}
        placeholders: dict[str, str] = {}
        order: list[str] = []
        for target, cells in plans:
            if target is None or target.startswith("new:"):
                if target is not None and target in placeholders:
                    target = placeholders[target]
                else:
                    rid = new_id("rec")
                    if target is not None:
                        placeholders[target] = rid
                    table["seq"] = table.get("seq", 0) + 1
                    table["records"][rid] = {"createdTime": now, "cells": {}, "modified": {}, "seq": table["seq"]}
                    created[rid] = True
                    target = rid
            rec = table["records"][target]
            if replace:
                for f in table["fields"]:
                    if f["type"] not in COMPUTED:
                        cells.setdefault(f["id"], None)
            before = dict(rec["cells"])
            for fid, value in cells.items():
                if value is None:
                    rec["cells"].pop(fid, None)
                else:
                    rec["cells"][fid] = value
                if before.get(fid) != value:
                    rec["modified"][fid] = now
            if target not in created:
                after = rec["cells"]
                diff = {fid for fid in set(before) | set(after) if before.get(fid) != after.get(fid)}
                if diff:
                    entry = changed.setdefault(target, {"current": {}, "previous": {}})
                    for fid in diff:
                        entry["current"][fid] = rec["cells"].get(fid)
                        entry["previous"].setdefault(fid, before.get(fid))
            order.append(target)
        self.emit_changes(
            base_id,
            table,
            {
                "created": {
                    rid: {"createdTime": now, "cellValuesByFieldId": dict(table["records"][rid]["cells"])}
                    for rid in created
                },
                "changed": changed,
                "destroyed": [],
            },
        )
        records = [self.render(table, rid, by_id=by_id) for rid in order]
        if single:
            return records[0]
        out: dict[str, Any] = {"records": records}
        if upsert:
            out["createdRecords"] = [rid for rid in dict.fromkeys(order) if rid in created]
            out["updatedRecords"] = [rid for rid in dict.fromkeys(order) if rid not in created]
        return out

    def delete_records(self, base_id: str, table_key: str, ids: list[str]) -> list[dict[str, Any]]:
        table = self.table(base_id, table_key)
        if not ids or len(ids) > MAX_BATCH:
            raise AirtableError(422, "INVALID_RECORDS", "You must provide an array of up to 10 record ids to delete.")
        if any(i not in table["records"] for i in ids):
            raise record_not_found()
        for i in ids:
            del table["records"][i]
        gone = list(dict.fromkeys(ids))
        self.emit_changes(base_id, table, {"created": {}, "changed": {}, "destroyed": gone})
        return [{"id": i, "deleted": True} for i in ids]


def _int_param(raw: Any, name: str, low: int, high: int | None, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise bad_request(f"{name} must be an integer, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        raise bad_request(f"{name} must be between {low} and {high or 'any'}, got {value}")
    return value


def _comparable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _sort_key(value: Any) -> tuple[int, Any]:
    """Blanks first; numbers by value; text without regard to case."""
    if value is None:
        return (0, "")
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, (int, float)):
        return (1, value)
    return (2, to_text(value).lower())
