"""Canonical values and their JSON form: what the rules read back is what the sync read."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from connectors.base import Record
from hub.config.mapping import Mapping
from hub.mapping.translate import from_system, revive
from hub.mapping.values import to_json

MAPPING = Mapping.model_validate(
    {
        "entity": "contact",
        "identity": ["email"],
        "fields": {
            "email": {"type": "email"},
            "phone": {"type": "phone", "region": "FR"},
            "spent": {"type": "number"},
            "born": {"type": "date"},
            "seen": {"type": "datetime", "tz": "Europe/Paris"},
            "vip": {"type": "bool"},
        },
        "systems": {
            "hubspot": {
                "object": "contacts",
                "fields": {"email": "email", "phone": "phone", "spent": "s", "born": "b", "seen": "t", "vip": "v"},
            }
        },
    }
)


def test_revive_gives_back_exactly_what_the_sync_read() -> None:
    raw = {"email": " Ana@X.fr ", "phone": "06 12 34 56 78", "s": "1500.50", "b": "1990-04-02",
           "t": "2026-05-01T10:00:00Z", "v": "true"}  # fmt: skip
    typed = from_system(MAPPING, "hubspot", Record("7", raw)).values
    assert revive(MAPPING, to_json(typed)) == typed
    assert typed["phone"] == "+33612345678" and typed["born"] == date(1990, 4, 2)


def test_revive_reads_other_date_forms_as_the_field_type_says_and_drops_unknown_keys() -> None:
    out = revive(
        MAPPING,
        {"seen": "2026-05-01T10:00:00", "born": datetime(2026, 1, 2, 23, tzinfo=UTC), "other": 1, "spent": None},
    )
    assert out["seen"] == datetime(2026, 5, 1, 8, tzinfo=UTC)  # naive: the field's time zone (Paris, UTC+2)
    assert out["born"] == date(2026, 1, 2)
    assert out["spent"] is None and "other" not in out
    offset = revive(MAPPING, {"seen": "2026-05-01T10:00:00+02:00"})["seen"]
    assert offset == datetime(2026, 5, 1, 10, tzinfo=timezone(timedelta(hours=2)))


def test_a_new_mapping_never_reads_with_the_plan_of_a_collected_one() -> None:
    """Config reloads make new mappings; one may land where a collected one was (same id())."""
    import gc

    def mapping(hubspot_field: str) -> Mapping:
        return Mapping.model_validate(
            {
                "entity": "contact",
                "identity": ["email"],
                "fields": {"email": {"type": "email"}},
                "systems": {"hubspot": {"object": "contacts", "fields": {"email": hubspot_field}}},
            }
        )

    record = Record("1", {"email": "a@b.c", "work_email": "w@b.c"})
    for _ in range(50):  # CPython reuses a freed address often: a cache keyed by id() fails within a few rounds
        old = mapping("email")
        assert from_system(old, "hubspot", record).values["email"] == "a@b.c"
        del old
        gc.collect()
        new = mapping("work_email")
        assert from_system(new, "hubspot", record).values["email"] == "w@b.c"


def test_the_hubspot_collection_names_the_properties_the_mapping_reads() -> None:
    from hub.engine.entities import collection

    coll = collection(MAPPING, "hubspot")
    assert coll.name == "contacts" and coll.fields == ("email", "phone", "s", "b", "t", "v")
    nested = Mapping.model_validate(
        {"entity": "x", "identity": ["a"], "fields": {"a": "string", "b": "string"},
         "systems": {"hubspot": {"object": "deals", "fields": {"a": "p.one", "b": "p.two"}}}}
    )  # fmt: skip
    assert collection(nested, "hubspot").fields == ("p",)
