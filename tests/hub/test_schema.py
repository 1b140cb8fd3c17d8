"""The published JSON Schemas: current with the models, accept the shipped YAML, refuse broken YAML."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from hub.config import schema

ROOT = Path(__file__).resolve().parents[2]


def _validator(name: str) -> jsonschema.Draft202012Validator:
    data = json.loads((ROOT / "schema" / name).read_text())
    jsonschema.Draft202012Validator.check_schema(data)
    return jsonschema.Draft202012Validator(data)


def test_committed_schemas_are_current() -> None:
    """`hub schema` was run after the last model change."""
    assert json.loads((ROOT / "schema" / schema.RULES_SCHEMA).read_text()) == json.loads(
        json.dumps(schema.rules_schema())
    )
    assert json.loads((ROOT / "schema" / schema.MAPPING_SCHEMA).read_text()) == json.loads(
        json.dumps(schema.mapping_schema())
    )


def _shipped() -> list[Path]:
    files = [ROOT / "rules.yaml", *sorted((ROOT / "mappings").glob("*.yaml"))]
    files += sorted((ROOT / "examples").glob("*/rules.yaml")) + sorted((ROOT / "examples").glob("*/mappings/*.yaml"))
    return files


@pytest.mark.parametrize("path", _shipped(), ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_yaml_is_valid_and_points_at_its_schema(path: Path) -> None:
    text = path.read_text()
    first = text.splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema="), first
    target = (path.parent / first.split("$schema=", 1)[1]).resolve()
    assert target.exists(), f"{path}: schema link {target} does not exist"
    validator = _validator(target.name)
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(yaml.safe_load(text))]
    assert errors == []


def test_schema_rejects_broken_rules() -> None:
    validator = _validator(schema.RULES_SCHEMA)
    good = {"rules": [{"id": "r", "when": {"created": "client"}, "do": [{"mailchimp.tag": {"tags": ["x"]}}]}]}
    assert list(validator.iter_errors(good)) == []
    for broken in (
        {"rules": [{"id": "r", "when": {"created": "client"}, "do": [{"mailchimp.tagg": {"tags": ["x"]}}]}]},
        {"rules": [{"id": "r", "when": {"creatd": "client"}, "do": [{"notify": {"text": "x"}}]}]},
        {"rules": [{"id": "r", "when": {"created": "client"}, "cooldwn": "3d", "do": [{"notify": {"text": "x"}}]}]},
        {"rules": [{"id": "r", "when": {"created": "client"}, "do": [{"notify": {"text": "x", "chanel": "ops"}}]}]},
        {"rules": [{"id": "r", "when": {"created": "client"}, "do": []}]},
        {"rules": [{"id": "Bad Id", "when": {"created": "client"}, "do": [{"notify": {"text": "x"}}]}]},
    ):
        assert list(validator.iter_errors(broken)), broken


def test_schema_accepts_templates_for_typed_arguments() -> None:
    validator = _validator(schema.RULES_SCHEMA)
    doc = {
        "rules": [
            {
                "id": "r",
                "when": {"created": "client"},
                "do": [{"hubspot.create_task": {"subject": "x", "priority": "{{ record.priority }}"}}],
            }
        ]
    }
    assert list(validator.iter_errors(doc)) == []


def test_schema_rejects_broken_mapping() -> None:
    validator = _validator(schema.MAPPING_SCHEMA)
    base = yaml.safe_load((ROOT / "mappings" / "client.yaml").read_text())
    assert list(validator.iter_errors(base)) == []
    broken = dict(base, fields={**base["fields"], "first_name": "strng"})
    assert list(validator.iter_errors(broken))
    broken = dict(base, systems={"airtabel": {"base": "x", "table": "y"}})
    assert list(validator.iter_errors(broken))
