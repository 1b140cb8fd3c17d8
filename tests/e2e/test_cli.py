"""The operator's commands against a running pack: a scheduled rule's dry run, then the run history
and the pending waits after real work (no personal data in either)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from connectors.base import Collection, Write
from hub.cli import main
from tests.support.hubenv import Hub

PACK = "examples/tennis_breakdown"
BASE = "appHubSandbox0001"
SECRET = "whsec_" + "dGVubmlzLXVwbG9hZC1zZWNyZXQtZm9yLXRlc3Rz"


@pytest.mark.usefixtures("needs_firestore")
def test_run_dry_run_runs_and_waits(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = hub.use(PACK, AIRTABLE_BASE_ID=BASE, MAILCHIMP_LIST_ID="hubsandbx1",
                 TENNIS_OPS_WEBHOOK_URL="http://127.0.0.1:9/ops", TENNIS_UPLOAD_WEBHOOK_SECRET=SECRET)
    for name, value in hub.env(rt.config_dir).items():
        monkeypatch.setenv(name, value)
    hub.pin("2026-01-01T09:00:00Z")
    rows = hub.connector("airtable").upsert_many(Collection("Clients", base=BASE), [
        Write({"Email": "old@example.com", "Status": "lead", "Marketing consent": True,
               "Acquired at": "2025-09-01T09:00:00Z"}),
        Write({"Email": "new@example.com", "Status": "lead", "Marketing consent": True,
               "Acquired at": "2025-12-20T09:00:00Z"}),
    ])
    hub.ingest("airtable", "Clients", [r.id for r in rows], kind="created", base=BASE)
    hub.work()
    cli = CliRunner()
    config = str(rt.config_dir)

    dry = cli.invoke(main, ["--config", config, "--now", "2026-01-01T10:00:00Z", "run", "reactivation_d90",
                            "--dry-run"])
    assert dry.exit_code == 0, dry.output
    report = json.loads(dry.output)
    # 122 days since 2025-09-01 (≥ 90: matched); 12 days since 2025-12-20 (not matched).
    assert (report["records"], report["matched"], report["dry_run"]) == (2, 1, True)
    assert [p["actions"][0]["action"] for p in report["plans"]] == ["mailchimp.event"]
    mc = hub.connector("mailchimp")
    assert all(e["name"] != "reactivation" for e in mc.events("hubsandbx1", "old@example.com"))  # acted on nothing

    runs = cli.invoke(main, ["--config", config, "runs", "--rule", "welcome_email"])
    assert runs.exit_code == 0, runs.output
    lines = [line for line in runs.output.splitlines() if line.strip()]
    assert len(lines) == 2 and all("fired" in line and "mailchimp.event=done" in line for line in lines)
    assert "@" not in runs.output  # records are named by a hash, never by their email

    waits = cli.invoke(main, ["--config", config, "waits"])
    assert waits.exit_code == 0, waits.output
    assert sorted(line.split()[1] for line in waits.output.splitlines()) == ["upload_reminder_d3"] * 2
    assert "@" not in waits.output
