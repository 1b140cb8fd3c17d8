"""Load a config directory (``rules.yaml`` + ``mappings/*.yaml``) and report every problem at once.

Nothing runs before this passes. A broken mapping or a broken rule is refused on its own; the
rest keeps loading (a rule that needs a refused mapping is refused too, saying why).
"""

from __future__ import annotations

import os
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hub.config import checks
from hub.config.envsubst import expand
from hub.config.issues import ConfigIssue, from_validation_error
from hub.config.mapping import Mapping
from hub.config.rules import Rule, RulesFile
from hub.config.steps import Step, compile_steps
from hub.config.yamlsrc import Pos, PosDict, PosList, YamlSyntaxError, load_file
from hub.errors import ConfigError

RULES_FILE = "rules.yaml"
MAPPINGS_DIR = "mappings"


@dataclass
class CompiledRule:
    model: Rule
    steps: list[Step]
    pos: Pos
    marketing: bool

    @property
    def id(self) -> str:
        return self.model.id


@dataclass
class Config:
    root: Path
    rules_file: RulesFile = field(default_factory=RulesFile)
    mappings: dict[str, Mapping] = field(default_factory=dict)
    mapping_files: dict[str, str] = field(default_factory=dict)
    rules: dict[str, CompiledRule] = field(default_factory=dict)
    issues: list[ConfigIssue] = field(default_factory=list)
    refused_rules: list[str] = field(default_factory=list)
    refused_entities: dict[str, str] = field(default_factory=dict)  # entity → its file
    broken_entries: set[str] = field(default_factory=set)  # "channels.ops": declared, but invalid
    # Values derived from this config on the hot paths, built on first use. Kept here, not in a
    # module-level dict keyed by id(): a new config can reuse the id of one collected before it.
    derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return not self.issues

    def mapping(self, entity: str) -> Mapping:
        try:
            return self.mappings[entity]
        except KeyError:
            raise ConfigError(f"no mapping for entity {entity!r}; known: {sorted(self.mappings)}") from None

    def raise_for_issues(self) -> None:
        if self.issues:
            raise ConfigError("invalid configuration:\n" + "\n".join(str(i) for i in self.issues))


def load(root: str | os.PathLike[str], env: AbcMapping[str, str] | None = None) -> Config:
    """Load and validate the config directory ``root``; problems are in ``Config.issues``."""
    base = Path(root)
    environ = os.environ if env is None else env
    cfg = Config(root=base)
    if not base.is_dir():
        cfg.issues.append(ConfigIssue(str(base), 1, 1, "config directory does not exist"))
        return cfg
    raw_mappings = _load_mappings(base, environ, cfg)
    _validate_mappings(raw_mappings, cfg)
    _load_rules(base, environ, cfg)
    cfg.issues = _without_echoes(cfg.issues)
    cfg.issues.sort(key=lambda i: (i.file != RULES_FILE, i.file, i.line, i.col))
    return cfg


def _without_echoes(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    """A missing environment variable is reported once, not again by the field that holds it."""
    missing_at = {(i.file, i.line, i.col) for i in issues if "environment variable" in i.message}
    return [
        i for i in issues if not ((i.file, i.line, i.col) in missing_at and i.message.endswith("refers to is not set"))
    ]


def _read(path: Path, display: str, env: AbcMapping[str, str], cfg: Config) -> Any:
    try:
        data = load_file(path, display)
    except YamlSyntaxError as exc:
        cfg.issues.append(ConfigIssue.at(exc.pos, exc.message))
        return None
    except OSError as exc:
        cfg.issues.append(ConfigIssue(display, 1, 1, f"cannot read file: {exc.strerror}"))
        return None
    if data is None:
        return None

    def report(pos: Pos | None, path: tuple[Any, ...], message: str) -> None:
        from hub.config.issues import format_path

        cfg.issues.append(ConfigIssue.at(pos, message, file=display, path=format_path(path)))

    return expand(data, env, report)


def _load_mappings(base: Path, env: AbcMapping[str, str], cfg: Config) -> list[tuple[str, PosDict]]:
    out: list[tuple[str, PosDict]] = []
    folder = base / MAPPINGS_DIR
    if not folder.is_dir():
        return out
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        display = f"{MAPPINGS_DIR}/{path.name}"
        data = _read(path, display, env, cfg)
        if data is None:
            continue
        if not isinstance(data, PosDict):
            cfg.issues.append(ConfigIssue(display, 1, 1, f"expected a mapping document, got {type(data).__name__}"))
            continue
        out.append((display, data))
    return out


def _validate_mappings(raw: list[tuple[str, PosDict]], cfg: Config) -> None:
    valid: list[tuple[str, PosDict, Mapping]] = []
    for display, data in raw:
        name = data.get("entity")
        context = f"entity {name!r}" if isinstance(name, str) else ""
        try:
            model = Mapping.model_validate(data)
        except ValidationError as exc:
            cfg.issues.extend(from_validation_error(exc, root=data, model=Mapping, context=context, file=display))
            if isinstance(name, str):
                cfg.refused_entities[name] = display
            continue
        if model.entity in cfg.mappings:
            first = cfg.mapping_files[model.entity]
            cfg.issues.append(
                ConfigIssue.at(
                    data.vpos["entity"],
                    f"entity {model.entity!r} is already declared in {first}",
                    context=context,
                    path="entity",
                )
            )
            continue
        cfg.mappings[model.entity] = model
        cfg.mapping_files[model.entity] = display
        valid.append((display, data, model))
    refused: set[str] = set()
    for display, data, model in valid:
        problems = checks.check_mapping(model, data, cfg.mappings, display)
        if problems:
            cfg.issues.extend(problems)
            refused.add(model.entity)
    for entity in refused:
        cfg.mappings.pop(entity, None)
        cfg.refused_entities[entity] = cfg.mapping_files.pop(entity, "")


def _load_rules(base: Path, env: AbcMapping[str, str], cfg: Config) -> None:
    path = base / RULES_FILE
    if not path.exists():
        if cfg.mappings:
            return  # a mappings-only directory (sync without automation) is fine
        cfg.issues.append(ConfigIssue(RULES_FILE, 1, 1, f"no {RULES_FILE} in {base}"))
        return
    data = _read(path, RULES_FILE, env, cfg)
    if data is None:
        return
    if not isinstance(data, PosDict):
        cfg.issues.append(
            ConfigIssue(RULES_FILE, 1, 1, f"expected a mapping with a 'rules:' list, got {type(data).__name__}")
        )
        return
    top = PosDict({k: v for k, v in data.items() if k != "rules"})
    top.pos, top.kpos, top.vpos = data.pos, data.kpos, data.vpos
    try:
        cfg.rules_file = RulesFile.model_validate(top)
    except ValidationError as exc:
        cfg.issues.extend(from_validation_error(exc, root=data, model=RulesFile, file=RULES_FILE))
        # keep going with what validates: each section alone
        cfg.rules_file = _salvage_top(top, cfg.broken_entries)
    rules = data.get("rules", [])
    if not isinstance(rules, PosList):
        cfg.issues.append(ConfigIssue.at(data.vpos.get("rules"), "expected a list of rules", path="rules"))
        return
    seen: dict[str, Pos] = {}
    for index, raw in enumerate(rules):
        compiled = _load_rule(index, raw, rules.ipos[index], seen, cfg)
        if compiled is not None:
            cfg.rules[compiled.id] = compiled


def _salvage_top(top: PosDict, broken: set[str]) -> RulesFile:
    """Keep what validates: each entry of a named section on its own, so one bad webhook does not
    take the others (and every rule using them) down with it."""
    good: dict[str, Any] = {}
    for key in ("settings", "budgets", "webhooks", "outbound", "templates", "channels"):
        if key not in top:
            continue
        section = top[key]
        if isinstance(section, dict) and key != "settings":
            kept = {}
            for name, entry in section.items():
                try:
                    RulesFile.model_validate({key: {name: entry}})
                    kept[name] = entry
                except ValidationError:
                    broken.add(f"{key}.{name}")
            good[key] = kept
            continue
        try:
            RulesFile.model_validate({key: section})
            good[key] = section
        except ValidationError:
            pass
    return RulesFile.model_validate(good)


def _load_rule(index: int, raw: Any, pos: Pos, seen: dict[str, Pos], cfg: Config) -> CompiledRule | None:
    rid = raw.get("id") if isinstance(raw, dict) else None
    context = f"rule {rid!r}" if isinstance(rid, str) else f"rules[{index}]"
    if not isinstance(raw, PosDict):
        cfg.issues.append(
            ConfigIssue.at(pos, f"expected a rule (a mapping with id, when, do), got {raw!r}", context=context)
        )
        return None
    before = len(cfg.issues)
    if isinstance(rid, str) and rid in seen:
        first = seen[rid]
        cfg.issues.append(
            ConfigIssue.at(
                raw.vpos["id"],
                f"duplicate rule id {rid!r} (first defined at line {first.line})",
                context=context,
                path="id",
            )
        )
    elif isinstance(rid, str):
        seen[rid] = raw.vpos.get("id", pos)
    trigger_issue = checks.check_trigger_keys(raw, context)
    if trigger_issue is not None:
        cfg.issues.append(trigger_issue)
    model: Rule | None = None
    try:
        model = Rule.model_validate(raw)
    except ValidationError as exc:
        found = from_validation_error(exc, root=raw, model=Rule, context=context, file=RULES_FILE)
        if trigger_issue is not None:  # said better already
            found = [i for i in found if i.path != "when" or "trigger needs" not in i.message]
        cfg.issues.extend(found)
    if len(cfg.issues) > before:
        model = None
    cfg.issues.extend(checks.check_rule_refs(raw, model, cfg, context))
    steps = compile_steps(raw.get("do"), raw.vpos.get("do"), cfg, model, context, cfg.issues)
    if len(cfg.issues) > before or model is None or steps is None:
        cfg.refused_rules.append(rid if isinstance(rid, str) else f"rules[{index}]")
        return None
    marketing = model.marketing or any(s.marketing for s in steps)
    return CompiledRule(model=model, steps=steps, pos=pos, marketing=marketing)
