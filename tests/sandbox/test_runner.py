"""`hub sandbox`: all four services come up on loopback, answer their SDK-facing routes, print the
settings to use, and stop cleanly on Ctrl-C (no emulator JVM left behind)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.procs import python_env


def _java_children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"cloud-firestore-emulator" in cmdline and stat.split()[2] != "Z":
            out.append(int(entry.name))
    return out


def test_sandbox_starts_prints_settings_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    if os.environ.get("CI") != "true" and subprocess.run(["which", "java"], capture_output=True).returncode:
        pytest.skip("java is not installed")
    before = set(_java_children(0))
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "sandbox", "--data", str(tmp_path / "data")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=python_env())
    try:
        exports: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "MAILCHIMP_LIST_ID" not in exports:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line:
                break
            m = re.match(r"export (\w+)=(.*)", line.strip())
            if m:
                exports[m.group(1)] = m.group(2)
        started = proc.stderr.readline() if proc.stderr else ""
        print(started.strip())  # "# sandbox up in 1.2s; Ctrl-C stops it" — the figure for the notes
        assert {"AIRTABLE_ENDPOINT_URL", "AIRTABLE_API_KEY", "HUBSPOT_HOST", "HUBSPOT_ACCESS_TOKEN",
                "HUBSPOT_CLIENT_SECRET", "MAILCHIMP_HOST", "MAILCHIMP_API_KEY", "FIRESTORE_EMULATOR_HOST",
                "GOOGLE_CLOUD_PROJECT"} <= set(exports)
        at = requests.get(f"{exports['AIRTABLE_ENDPOINT_URL']}/v0/meta/bases", timeout=5,
                          headers={"Authorization": f"Bearer {exports['AIRTABLE_API_KEY']}"})
        hs = requests.get(f"{exports['HUBSPOT_HOST']}/crm/v3/objects/contacts", timeout=5,
                          headers={"Authorization": f"Bearer {exports['HUBSPOT_ACCESS_TOKEN']}"})
        mc = requests.get(f"{exports['MAILCHIMP_HOST']}/3.0/lists", timeout=5,
                          auth=("hub", exports["MAILCHIMP_API_KEY"]))
        fs = requests.get(f"http://{exports['FIRESTORE_EMULATOR_HOST']}/", timeout=5)
        assert [at.status_code, hs.status_code, mc.status_code, fs.status_code] == [200, 200, 200, 200]
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    assert code == 0
    assert set(_java_children(0)) - before == set(), "the emulator's JVM outlived the sandbox"
