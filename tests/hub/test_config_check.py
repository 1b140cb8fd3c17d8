"""`hub check`: golden messages for broken configs, partial loading, and the repo's own config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hub.cli import main
from hub.config import loader
from tests.support.procs import python_env

BROKEN = Path(__file__).parent / "broken"
CASES = sorted(p for p in BROKEN.iterdir() if p.is_dir())


def test_there_are_at_least_fifteen_cases() -> None:
    assert len(CASES) >= 15


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_broken_case_prints_expected_messages(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("HUB_TEST_UNSET_BASE_ID", raising=False)
    result = CliRunner().invoke(main, ["--config", str(case), "check"])
    expected = (case / "expected.txt").read_text(encoding="utf-8")
    assert result.exit_code == 1, result.output
    assert result.stdout == expected


def test_all_errors_are_reported_not_only_the_first() -> None:
    cfg = loader.load(BROKEN / "19_action_argument_type")
    assert len(cfg.issues) == 2
    cfg = loader.load(BROKEN / "21_bad_cron_and_timezone")
    assert {i.path for i in cfg.issues} == {"settings.timezone", "when.cron"}


def test_a_bad_rule_does_not_stop_a_good_one(tmp_path: Path) -> None:
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "client.yaml").write_text(
        (BROKEN / "01_unknown_action" / "mappings" / "client.yaml").read_text()
    )
    (tmp_path / "rules.yaml").write_text(
        "channels: {ops: {url: 'http://127.0.0.1:9/ops'}}\n"
        "rules:\n"
        "  - id: good\n"
        "    when: {created: client}\n"
        "    do: [{mailchimp.tag: {tags: [welcome]}}]\n"
        "  - id: broken\n"
        "    when: {created: client}\n"
        "    do: [{mailchimp.tagg: {tags: [welcome]}}]\n"
        "  - id: also_good\n"
        "    when: {changed: client, field: status, to: churned}\n"
        "    do: [{notify: {text: bye}}]\n"
    )
    cfg = loader.load(tmp_path)
    assert sorted(cfg.rules) == ["also_good", "good"]
    assert cfg.refused_rules == ["broken"]
    assert [str(i) for i in cfg.issues] == [
        "rules.yaml:8:11: rule 'broken' → do[0]: unknown action 'mailchimp.tagg' (did you mean 'mailchimp.tag'?)"
    ]


def test_rules_of_a_refused_mapping_say_why(tmp_path: Path) -> None:
    (tmp_path / "mappings").mkdir()
    mapping = (BROKEN / "01_unknown_action" / "mappings" / "client.yaml").read_text()
    (tmp_path / "mappings" / "client.yaml").write_text(
        mapping.replace("object: contacts", "object: contacts\n    oops: 1")
    )
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - id: r\n    when: {created: client}\n    do: [{notify: {text: x}}]\n"
    )
    cfg = loader.load(tmp_path)
    messages = [str(i) for i in cfg.issues]
    assert any("unknown key 'oops'" in m for m in messages)
    assert any("entity 'client' is not loaded: its mapping (mappings/client.yaml) has errors" in m for m in messages)


def test_env_references_are_resolved(tmp_path: Path) -> None:
    case = BROKEN / "09_missing_env_var"
    cfg = loader.load(
        case, env={"SLACK_WEBHOOK_URL": "http://127.0.0.1:1/x", "HUB_TEST_UNSET_BASE_ID": "appAAAAAAAAAAAAAA"}
    )
    assert cfg.ok, [str(i) for i in cfg.issues]
    assert cfg.rules_file.channels["ops"].url == "http://127.0.0.1:1/x"
    assert cfg.mappings["client"].systems.airtable is not None
    assert cfg.mappings["client"].systems.airtable.base == "appAAAAAAAAAAAAAA"


def test_repo_config_passes_check_in_a_real_process(repo_root: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hub.cli", "--config", str(repo_root), "check"],
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok: ")


def test_check_exits_one_in_a_real_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hub.cli", "--config", str(BROKEN / "01_unknown_action"), "check"],
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "rules.yaml:14:9: rule 'welcome_lead' → do[0]: unknown action 'mailchimp.tagg'" in proc.stdout
