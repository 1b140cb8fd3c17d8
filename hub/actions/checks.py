"""Load-time cross-checks for action arguments: names that must exist elsewhere in the config."""

from __future__ import annotations

from typing import Any

from hub.config.issues import suggest

Problems = list[tuple[str, str]]


def fields_of(cfg: Any, entity: str | None) -> list[str] | None:
    mapping = cfg.mappings.get(entity) if entity else None
    return list(mapping.all_fields()) if mapping is not None else None


def known_fields(raw: dict[str, Any], cfg: Any, entity: str | None, key: str = "fields") -> Problems:
    if entity is not None and entity not in cfg.mappings:
        return []
    fields = fields_of(cfg, entity)
    if fields is None:
        return [("", "this action needs a record, and the rule's trigger has none")] if entity is None else []
    return [
        (f"{key}.{name}", f"entity {entity!r} has no field {name!r}{suggest(name, fields)}")
        for name in (raw.get(key) or {})
        if name not in fields
    ]


def known_entity(name: Any, cfg: Any, path: str) -> Problems:
    if not isinstance(name, str) or name in cfg.mappings or "{{" in name:
        return []
    return [(path, f"unknown entity {name!r}{suggest(name, cfg.mappings)}")]


def declared(name: Any, cfg: Any, section_name: str, path: str) -> Problems:
    section = getattr(cfg.rules_file, section_name)
    if not isinstance(name, str) or name in section:
        return []
    if f"{section_name}.{name}" in cfg.broken_entries:
        return [(path, f"{section_name}.{name} is declared but has errors (see above)")]
    return [(path, f"no {name!r} under '{section_name}:' in rules.yaml{suggest(name, section)}")]


def mailchimp_audience(cfg: Any, entity: str | None) -> Problems:
    if entity is not None and entity not in cfg.mappings:
        return []  # the unknown entity is reported on its own
    mapping = cfg.mappings.get(entity) if entity else None
    if mapping is not None and mapping.systems.mailchimp is not None:
        return []
    contacts = [m.entity for m in cfg.mappings.values() if m.systems.mailchimp is not None]
    if len(contacts) == 1 and mapping is not None:
        emails = [n for n, fd in mapping.all_fields().items() if fd.type == "email"]
        if emails:
            return []
        return [("", f"entity {entity!r} has no email field to find the contact in {contacts[0]!r}'s audience")]
    if not contacts:
        return [("", "no entity is mapped to mailchimp")]
    return [("", f"entity {entity!r} is not mapped to mailchimp (audiences: {', '.join(contacts)})")]
