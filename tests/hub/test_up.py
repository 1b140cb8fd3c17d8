"""`hub up`, the quick start: it comes up, serves, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from hub import up as up_module
from hub.sandbox.procs import live_processes

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(pid: int) -> set[int]:
    """Every living process under ``pid`` (kept by the caller: once ``hub up`` has exited, a process
    it left behind is re-parented and no longer found from it)."""
    children: dict[int, list[int]] = {}
    for child, proc in live_processes().items():
        children.setdefault(proc.ppid, []).append(child)
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    return pid in live_processes()


def test_ctrl_c_stops_every_process_and_frees_the_port(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "HUB_CONFIG")}
    log = (tmp_path / "up.log").open("wb")
    args = ["up", "--port", str(port), "--data", str(tmp_path / "data"), "--no-firestore"]
    up = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a terminal of its own: Ctrl-C goes to this whole process group
    )
    tree: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while b"The hub is up" not in (tmp_path / "up.log").read_bytes():
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            assert time.monotonic() < deadline, "hub up did not come up"
            time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as resp:
            assert resp.status == 200
        tree = _descendants(up.pid)
        assert len(tree) >= 5  # redis, gunicorn master and its 2 workers, worker, cron
        # Ctrl-C reaches `hub up` alone, which stops each child with one signal: gunicorn's workers
        # hit by the terminal's SIGINT and their master's SIGQUIT at once can hang for good.
        assert all(os.getpgid(pid) != up.pid for pid in tree)

        os.killpg(up.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        assert up.wait(60) == 0, (tmp_path / "up.log").read_text()
        time.sleep(0.5)
        left = sorted(pid for pid in tree if _alive(pid))
        assert not left, [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in left]
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, "the port is still held"
    finally:  # nothing left running whatever failed
        for pid in (tree | _descendants(up.pid)) if up.poll() is None else tree:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if up.poll() is None:
            up.kill()
            up.wait()
        log.close()


def test_a_child_that_does_not_stop_is_killed_with_its_group(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As a gunicorn master with a hung worker: SIGTERM ignored, a process of its own beneath it."""
    monkeypatch.setattr(up_module, "_STOP_WAIT", 3.0)  # time enough for the polite one on a loaded machine
    stubborn = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print(child.pid, flush=True); time.sleep(60)"
    )
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    proc = subprocess.Popen([sys.executable, "-c", stubborn], stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None
    grandchild = int(proc.stdout.readline())
    try:
        started = time.monotonic()
        up_module._stop_all([("web", proc), ("worker", polite)])
        assert time.monotonic() - started < 10
        assert polite.returncode == -signal.SIGTERM  # stopped by its SIGTERM, not killed
        assert proc.returncode == -signal.SIGKILL
        deadline = time.monotonic() + 5  # SIGKILL is sent; the process ends when next scheduled
        while _alive(grandchild) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(grandchild)
        assert "the web process had not stopped: killed" in capsys.readouterr().out
    finally:
        for pid in (grandchild, proc.pid, polite.pid):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
