"""JSON Schemas of rules.yaml and mappings/*.yaml, for editors that validate while typing.

The rules schema is assembled from the models plus the action registry, so a new action is in the
schema as soon as it is registered. Arguments that are templates (``"{{ ... }}"``) are accepted
wherever a typed value is expected, as the loader does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hub.actions.registry import catalogue
from hub.config.mapping import FIELD_TYPES, Mapping
from hub.config.rules import Rule, RulesFile

SCHEMA_DIR = "schema"
RULES_SCHEMA = "rules.schema.json"
MAPPING_SCHEMA = "mapping.schema.json"
_TEMPLATE = {"type": "string", "pattern": r"\{\{|\{%", "description": "A template producing the value"}


def _lift_defs(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    defs.update(schema.pop("$defs", {}))
    return schema


def _templatable(schema: dict[str, Any]) -> dict[str, Any]:
    props = schema.get("properties", {})
    for name, prop in list(props.items()):
        if prop.get("type") == "string" and "pattern" not in prop and "enum" not in prop:
            continue
        props[name] = {
            "anyOf": [prop, _TEMPLATE],
            **({"description": prop["description"]} if "description" in prop else {}),
        }
    return schema


def rules_schema() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    top = _lift_defs(RulesFile.model_json_schema(by_alias=True), defs)
    rule = _lift_defs(Rule.model_json_schema(by_alias=True), defs)
    steps: list[dict[str, Any]] = []
    for name, spec in sorted(catalogue().items()):
        args = _templatable(_lift_defs(spec.args.model_json_schema(by_alias=True), defs))
        def_name = "Args_" + name.replace(".", "_")
        defs[def_name] = args
        steps.append(
            {
                "type": "object",
                "title": name,
                "description": spec.description,
                "properties": {name: {"anyOf": [{"$ref": f"#/$defs/{def_name}"}, {"type": "null"}]}},
                "required": [name],
                "additionalProperties": False,
            }
        )
    steps.append(
        {
            "type": "object",
            "title": "if / then / else",
            "properties": {
                "if": {"type": "string"},
                "then": {"type": "array", "items": {"$ref": "#/$defs/Step"}},
                "else": {"type": "array", "items": {"$ref": "#/$defs/Step"}},
            },
            "required": ["if", "then"],
            "additionalProperties": False,
        }
    )
    defs["Step"] = {"oneOf": steps}
    rule["properties"]["do"] = {**rule["properties"]["do"], "items": {"$ref": "#/$defs/Step"}}
    defs["Rule"] = rule
    top["properties"]["rules"] = {"type": "array", "items": {"$ref": "#/$defs/Rule"}}
    top["$defs"] = defs
    top["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    top["title"] = "Hub rules (rules.yaml)"
    return top


def _values(obj_schema: dict[str, Any], value_schema: dict[str, Any]) -> None:
    """Set the schema of an object's values, keeping key patterns when pydantic emitted them."""
    patterns = obj_schema.get("patternProperties")
    if patterns:
        for key in patterns:
            patterns[key] = value_schema
        obj_schema["additionalProperties"] = False
    else:
        obj_schema["additionalProperties"] = value_schema


def mapping_schema() -> dict[str, Any]:
    schema = Mapping.model_json_schema(by_alias=True)
    # The YAML shorthands the loader accepts: `name: string` and `field: System Name`.
    _values(
        schema["properties"]["fields"],
        {"anyOf": [{"$ref": "#/$defs/FieldDef"}, {"enum": list(FIELD_TYPES)}, {"type": "null"}]},
    )
    for name, definition in schema["$defs"].items():
        if name.endswith("Target"):
            _values(
                definition["properties"]["fields"], {"anyOf": [{"$ref": "#/$defs/SystemField"}, {"type": "string"}]}
            )
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Hub mapping (mappings/<entity>.yaml)"
    return schema


def write(root: Path) -> list[Path]:
    """Write both schemas under ``root/schema``; returns the paths written."""
    out = root / SCHEMA_DIR
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in ((RULES_SCHEMA, rules_schema()), (MAPPING_SCHEMA, mapping_schema())):
        path = out / name
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written
