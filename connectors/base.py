"""The contract every connector honours, whatever the system behind it.

Values in and out are the system's own field names and shapes (the mapping layer translates);
records are addressed by a :class:`Collection` (an Airtable base + table, a HubSpot object type,
a Firestore collection path, a Mailchimp list id).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Collection:
    """Where records of one kind live in one system."""

    name: str  # Airtable table name or id, HubSpot object type, Firestore collection path, Mailchimp list id
    base: str = ""  # Airtable base id; empty elsewhere
    # The fields the caller reads (empty: all). HubSpot asks for these properties only: an object
    # type has hundreds, a mapping reads a handful, and every batch read carries them.
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.base}/{self.name}" if self.base else self.name


@dataclass
class Record:
    """One record as its system returns it."""

    id: str
    fields: dict[str, Any]
    created_at: datetime | None = None
    updated_at: datetime | None = None  # the system's own modification time, used for conflicts


@dataclass
class Write:
    """One record to write: update by ``id``, or upsert matching ``match`` (a system field), or create."""

    fields: dict[str, Any]
    id: str | None = None
    match: str | None = None


@dataclass
class FieldSpec:
    """A field the hub needs to exist in a system (schema provisioning)."""

    name: str
    type: str = "string"  # string, number, bool, date, datetime, enum, email, phone, text
    label: str = ""
    options: Sequence[str] = field(default_factory=tuple)  # enum choices
    unique: bool = False  # values unique across records (usable as an upsert key where the vendor allows)


@runtime_checkable
class Connector(Protocol):
    """What the engine needs from a system of record."""

    system: str

    def get(self, coll: Collection, record_id: str) -> Record | None:
        """One record by its id, or None if it does not exist (deleted/archived)."""
        ...

    def get_many(self, coll: Collection, record_ids: Sequence[str]) -> list[Record]:
        """Records by id, batched to the vendor maximum; missing ones are left out."""
        ...

    def find(self, coll: Collection, field_name: str, value: Any) -> list[Record]:
        """Records whose ``field_name`` equals ``value`` (identity matching)."""
        ...

    def iterate(
        self,
        coll: Collection,
        *,
        where: dict[str, Any] | None = None,
        changed_since: datetime | None = None,
        page_size: int | None = None,
    ) -> Iterator[Record]:
        """Every record (optionally equal to ``where`` and modified after ``changed_since``),
        fetched page by page as the iterator is consumed."""
        ...

    def upsert_many(self, coll: Collection, writes: Sequence[Write]) -> list[Record]:
        """Apply ``writes`` in vendor-sized batches; returns the written records in order."""
        ...

    def delete(self, coll: Collection, record_ids: Sequence[str]) -> None:
        """Delete (or archive, where the vendor only archives) the records."""
        ...

    def ensure_schema(self, coll: Collection, fields: Sequence[FieldSpec]) -> list[str]:
        """Create the fields/properties/merge fields that are missing; returns the names created."""
        ...


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of at most ``size`` items (vendor batch limits)."""
    if size < 1:
        raise ValueError(f"chunk size must be ≥ 1, got {size!r}")
    for start in range(0, len(items), size):
        yield items[start : start + size]
