"""`hub rules test`: the JSON plan for a fixture record, with exact day counts on a pinned clock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hub.cli import main

ROOT = Path(__file__).resolve().parents[2]
LEAD = Path(__file__).parent / "fixtures" / "dryrun" / "lead.json"
RULES = """\
channels:
  ops: {url: "http://127.0.0.1:9/ops"}
rules:
  - id: dormant_notice
    when: {cron: "0 9 * * *", for_each: {entity: client, where: "days_since(record.last_activity) >= 90"}}
    do:
      - notify: {text: "{{ record.first_name }} inactive for {{ days_since(record.last_activity) }} days"}
      - if: days_since(record.created_at) < 3
        then:
          - mailchimp.tag: {tags: [new_and_dormant]}
        else:
          - mailchimp.event: {name: dormant, properties: {days: "{{ days_since(record.last_activity) }}"}}
"""


def run(args: list[str]) -> dict:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_plan_for_the_d3_reminder_at_exactly_72h() -> None:
    plan = run(
        [
            "--config",
            str(ROOT),
            "rules",
            "test",
            "lead_reminder_d3",
            "--record",
            str(LEAD),
            "--now",
            "2026-01-14T08:30:00Z",
        ]
    )
    assert plan == {
        "rule": "lead_reminder_d3",
        "now": "2026-01-14T08:30:00Z",
        "entity": "client",
        "trigger": {"created": "client"},
        "condition": "record.tickets == 0",
        "record": {
            "email": "pierre.dupont@email.com",
            "phone": "+33612345678",
            "first_name": "Pierre",
            "status": "lead",
            "marketing_consent": True,
            "created_at": "2026-01-11T08:30:00Z",
            "last_activity": "2025-10-16T10:00:00Z",
            "tickets": 0,
            "last_name": None,
            "source": None,
            "journey": None,
            "segment": None,
            "hubspot_id": None,
            "airtable_id": None,
            "mailchimp_id": None,
        },
        "wait": {"duration": "3d", "due": "2026-01-17T08:30:00Z"},
        "guards": {"cooldown": "30d", "daily_limit": None, "budget": None, "marketing": True},
        "fires": True,
        "reason": "condition is true",
        "actions": [
            {"step": "do[0]", "action": "mailchimp.tag", "args": {"tags": ["reminder_d3"]}},
            {"step": "do[1]", "action": "journey.append", "args": {"event": "email_sent_reminder", "details": {}}},
        ],
    }


def test_no_consent_means_no_marketing(tmp_path: Path) -> None:
    record = json.loads(LEAD.read_text())
    record["marketing_consent"] = False
    path = tmp_path / "r.json"
    path.write_text(json.dumps(record))
    plan = run(["--config", str(ROOT), "rules", "test", "welcome_lead", "--record", str(path)])
    assert plan["fires"] is False
    assert plan["reason"] == "no marketing consent (marketing_consent is False)"
    assert plan["actions"] == []


@pytest.mark.parametrize(
    ("now", "fires", "days"),
    [("2026-01-14T09:59:59Z", False, 89), ("2026-01-14T10:00:00Z", True, 90), ("2026-01-15T10:00:00Z", True, 91)],
)
def test_day_counts_are_exact_on_a_pinned_clock(tmp_path: Path, now: str, fires: bool, days: int) -> None:
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "client.yaml").write_text(
        (ROOT / "mappings" / "client.yaml").read_text().replace("$schema=../schema", f"$schema={ROOT}/schema")
    )
    (tmp_path / "mappings" / "ticket.yaml").write_text((ROOT / "mappings" / "ticket.yaml").read_text())
    (tmp_path / "rules.yaml").write_text(RULES)
    plan = run(["--config", str(tmp_path), "--now", now, "rules", "test", "dormant_notice", "--record", str(LEAD)])
    assert plan["fires"] is fires
    if fires:
        assert plan["actions"] == [
            {
                "step": "do[0]",
                "action": "notify",
                "args": {"text": f"Pierre inactive for {days} days", "channel": "ops"},
            },
            {
                "step": "do[1].else[0]",
                "action": "mailchimp.event",
                "args": {"name": "dormant", "properties": {"days": str(days)}},
            },
        ]
    else:
        assert plan["reason"] == "for_each.where is false for this record"


def test_unknown_rule_suggests() -> None:
    result = CliRunner().invoke(main, ["--config", str(ROOT), "rules", "test", "welcome_leed", "--record", str(LEAD)])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"] == "unknown rule 'welcome_leed' (did you mean 'welcome_lead'?)"
