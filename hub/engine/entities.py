"""Where each entity lives: (system, collection) → entity, and the record key across systems.

A record's key is its first identity value (``email:pierre@x.com``), so the same client is one
record whether it came from HubSpot, Airtable or Mailchimp. A record with no identity value yet
is keyed by its system id until one appears.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from connectors.base import Collection
from hub.config.loader import Config
from hub.config.mapping import Mapping
from hub.errors import ConfigError
from hub.mapping.translate import system_field


def collection(mapping: Mapping, system: str) -> Collection:
    target = getattr(mapping.systems, system, None)
    if target is None:
        raise ConfigError(f"entity {mapping.entity!r} is not mapped to {system}")
    if system == "airtable":
        return Collection(target.table, base=target.base)
    if system == "hubspot":
        properties = dict.fromkeys(sf.field.split(".")[0] for sf in target.fields.values())
        return Collection(target.object, fields=tuple(properties))
    if system == "firestore":
        return Collection(target.collection)
    if system == "mailchimp":
        return Collection(target.list)
    raise ConfigError(f"unknown system {system!r}")


def collection_id(system: str, coll: Collection | str, base: str = "") -> str:
    if isinstance(coll, Collection):
        return f"{system}:{coll.base}/{coll.name}" if coll.base else f"{system}:{coll.name}"
    return f"{system}:{base}/{coll}" if base else f"{system}:{coll}"


@dataclass(frozen=True)
class Place:
    entity: str
    system: str
    coll: Collection


class EntityIndex:
    """Look up which entity a (system, collection) holds. Built once per config."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._by_coll: dict[str, Place] = {}
        for entity, mapping in cfg.mappings.items():
            for system, _ in mapping.systems.items():
                coll = collection(mapping, system)
                self._by_coll[collection_id(system, coll)] = Place(entity, system, coll)
                if system == "hubspot":
                    self._by_coll.setdefault(
                        collection_id(system, _HUBSPOT_TYPE_IDS.get(coll.name, coll.name)), Place(entity, system, coll)
                    )

    def find(self, system: str, coll: str, base: str = "") -> Place | None:
        return self._by_coll.get(collection_id(system, coll, base))

    def places(self, entity: str) -> list[Place]:
        mapping = self.cfg.mappings[entity]
        return [Place(entity, s, collection(mapping, s)) for s, _ in mapping.systems.items()]


# HubSpot webhooks name object types by their ids in some payloads.
_HUBSPOT_TYPE_IDS = {"contacts": "0-1", "companies": "0-2", "deals": "0-3", "tickets": "0-5"}


def record_key(mapping: Mapping, values: dict[str, Any], system: str, record_id: str) -> str:
    for ident in mapping.identity:
        value = values.get(ident)
        if value not in (None, ""):
            return f"{ident}:{value}"
    return f"{system}_id:{record_id}"


def key_hash(key: str) -> str:
    """A key without the personal data in it (emails, phones), for history and logs."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def identity_field(mapping: Mapping, system: str) -> tuple[str, str] | None:
    """The first identity field this system maps: (canonical name, system field name)."""
    for ident in mapping.identity:
        sf = system_field(mapping, system, ident)
        if sf is not None:
            return ident, sf
    return None
