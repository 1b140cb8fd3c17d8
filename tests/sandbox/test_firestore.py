"""The Firestore emulator harness and the fault-injecting TCP proxy."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from connectors.base import Collection, Write
from connectors.firestore import FirestoreConnector
from hub.sandbox import firestore as harness
from hub.sandbox.firestore import (
    PACKAGE,
    EmulatorMissing,
    FirestoreEmulator,
    _group_alive,
    exports,
    find_emulator,
)
from hub.sandbox.tcpproxy import ProxyFaults, TcpProxy
from tests.support.firestore import (
    emulator_launcher,
    firestore_emulator,  # noqa: F401  (fixture)
    fresh_project,
)
from tests.support.procs import free_port, python_env, wait_for

CLIENTS = Collection("clients")


def emulator_processes(port: int) -> list[int]:
    """Live (non-zombie) emulator JVMs or launchers serving ``port``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        serving = b"--port" in argv and str(port).encode() in argv and any(b"firestore" in a for a in argv)
        if serving and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def connector(emulator: FirestoreEmulator, project: str) -> FirestoreConnector:
    return FirestoreConnector(project=project, emulator_host=emulator.host_port)


# -- finding the emulator ---------------------------------------------------------------------------
def test_find_emulator_uses_the_env_override(tmp_path: Path) -> None:
    launcher = tmp_path / "cloud_firestore_emulator"
    launcher.write_text("#!/bin/sh\n")
    assert find_emulator({"FIRESTORE_EMULATOR_BIN": str(launcher)}) == launcher
    with pytest.raises(EmulatorMissing, match="FIRESTORE_EMULATOR_BIN"):
        find_emulator({"FIRESTORE_EMULATOR_BIN": str(tmp_path / "nope")})


def test_missing_emulator_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "_dpkg_launcher", lambda: None)
    monkeypatch.setattr(harness, "KNOWN_PATH", tmp_path / "absent")
    with pytest.raises(EmulatorMissing, match=PACKAGE):
        find_emulator({})


def test_missing_java_is_named(tmp_path: Path) -> None:
    with pytest.raises(EmulatorMissing, match="Java"):
        harness.require_java({"JAVA": str(tmp_path / "no-java")})


def test_installed_emulator_is_found() -> None:
    launcher = emulator_launcher()
    assert launcher.name == "cloud_firestore_emulator" and os.access(launcher, os.X_OK)


def test_exports_names_the_settings() -> None:
    assert exports("127.0.0.1:8081") == {
        "FIRESTORE_EMULATOR_HOST": "127.0.0.1:8081",
        "GOOGLE_CLOUD_PROJECT": "demo-hub",
    }
    assert exports("127.0.0.1:9", "demo-x")["GOOGLE_CLOUD_PROJECT"] == "demo-x"
    with pytest.raises(ValueError, match="HOST:PORT"):
        exports("127.0.0.1")
    with pytest.raises(ValueError, match="project"):
        exports("127.0.0.1:9", "a/b")


# -- lifecycle ----------------------------------------------------------------------------------------
def test_start_and_stop_leave_no_java_behind() -> None:
    emulator = FirestoreEmulator(launcher=emulator_launcher()).start()
    pgid = emulator.proc.pid if emulator.proc else -1
    port = emulator.port
    try:
        assert requests.get(emulator.url + "/", timeout=5).text.strip() == "Ok"
        assert emulator.startup_seconds is not None and emulator.startup_seconds > 0
        assert _group_alive(pgid)
        assert emulator_processes(port), "the emulator JVM should be visible while running"
    finally:
        emulator.stop()
    assert not emulator.running
    assert not _group_alive(pgid)
    assert emulator_processes(port) == []
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)


def test_a_busy_port_is_refused_before_spawning() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        emulator = FirestoreEmulator(launcher=emulator_launcher())
        with pytest.raises(harness.EmulatorError, match=f"port {port}"):
            emulator.start(port=port)
    assert emulator.proc is None


def test_data_dir_persists_saved_data_across_restarts(tmp_path: Path) -> None:
    launcher = emulator_launcher()
    project = "demo-persist"
    emulator = FirestoreEmulator(launcher=launcher, project=project).start(data_dir=tmp_path)
    fs = connector(emulator, project)
    kept = fs.upsert_many(CLIENTS, [Write({"email": "kept@example.com"}, id="kept")])
    fs.close()
    emulator.stop()  # saves
    assert (tmp_path / "snapshot" / "snapshot.overall_export_metadata").is_file()

    emulator.start(data_dir=tmp_path)
    fs = connector(emulator, project)
    record = fs.get(CLIENTS, "kept")
    assert record is not None and record.fields["email"] == "kept@example.com"
    # The stamp written by the connector survives the import (the emulator resets update times).
    assert record.fields["updated_at"] == kept[0].fields["updated_at"]
    fs.upsert_many(CLIENTS, [Write({"email": "lost@example.com"}, id="lost")])
    fs.close()
    emulator.stop(save=False)

    emulator.start(data_dir=tmp_path)
    try:
        fs = connector(emulator, project)
        assert fs.get(CLIENTS, "kept") is not None
        assert fs.get(CLIENTS, "lost") is None
        fs.close()
    finally:
        emulator.stop(save=False)


def test_reset_clears_one_project(firestore_emulator: FirestoreEmulator) -> None:  # noqa: F811
    one, two = fresh_project(), fresh_project()
    a, b = connector(firestore_emulator, one), connector(firestore_emulator, two)
    try:
        a.upsert_many(CLIENTS, [Write({"n": 1}, id="x")])
        b.upsert_many(CLIENTS, [Write({"n": 2}, id="x")])
        firestore_emulator.reset(one)
        assert a.get(CLIENTS, "x") is None
        assert b.get(CLIENTS, "x") is not None
    finally:
        a.close()
        b.close()
        firestore_emulator.reset(two)


def test_module_prints_its_exports_and_stops_cleanly() -> None:
    emulator_launcher()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.sandbox.firestore", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=python_env(),
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip(), proc.stdout.readline().strip()]
        assert lines == [f"export FIRESTORE_EMULATOR_HOST=127.0.0.1:{port}", "export GOOGLE_CLOUD_PROJECT=demo-hub"]
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert emulator_processes(port) == []


# -- the TCP proxy -------------------------------------------------------------------------------------
@pytest.fixture
def echo_server() -> Iterator[str]:
    """A loopback TCP echo server (the proxy's upstream in these tests)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while not stop.is_set():
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(timeout=2)
    listener.close()


def roundtrip(address: str, payload: bytes) -> bytes:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := s.recv(65536):
            received += chunk
        return received


def test_proxy_forwards_and_counts(echo_server: str) -> None:
    with TcpProxy(echo_server, faults=ProxyFaults(latency_ms=5)) as proxy:
        payload = os.urandom(200_000)
        assert roundtrip(proxy.host_port, payload) == payload
        wait_for(lambda: proxy.stats()["active"] == 0, timeout=5, what="connection closed")
        stats = proxy.stats()
    assert stats["connections"] == 1 and stats["cuts"] == 0
    assert stats["bytes_up"] == stats["bytes_down"] == len(payload)


def test_proxy_cuts_connections_on_demand_and_at_a_rate(echo_server: str) -> None:
    with TcpProxy(echo_server) as proxy:
        proxy.cut_next(1)
        with pytest.raises(OSError):  # reset by peer (or a short read reported as one)
            got = roundtrip(proxy.host_port, b"hello")
            if got != b"hello":
                raise ConnectionResetError("short read")
        assert roundtrip(proxy.host_port, b"again") == b"again"  # the next connection is fine
        proxy.update(cut_rate=1.0, seed=7)
        for _ in range(3):
            with pytest.raises(OSError):
                if roundtrip(proxy.host_port, b"x") != b"x":
                    raise ConnectionResetError("short read")
        assert proxy.stats()["cuts"] == 4
    assert proxy.stats()["connections"] == 5


def test_proxy_bounds_connections_and_validates_settings(echo_server: str) -> None:
    with TcpProxy(echo_server, max_connections=1) as proxy:
        host, port = proxy.host_port.rsplit(":", 1)
        held = socket.create_connection((host, int(port)), timeout=5)
        try:
            held.sendall(b"hold")
            assert held.recv(4) == b"hold"
            with pytest.raises(OSError):
                if roundtrip(proxy.host_port, b"second") != b"second":
                    raise ConnectionResetError("refused")
            assert proxy.stats()["refused"] == 1
        finally:
            held.close()
        with pytest.raises(ValueError, match="unknown"):
            proxy.update(drop_everything=True)
        with pytest.raises(ValueError, match="cut_rate"):
            proxy.update(cut_rate=2)
        assert proxy.faults.cut_rate == 0.0  # a refused update changes nothing
    with pytest.raises(ValueError, match="HOST:PORT"):
        TcpProxy("nowhere")


def test_fixture_skips_without_the_emulator_and_fails_on_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIRESTORE_EMULATOR_BIN", str(tmp_path / "absent"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=PACKAGE):
        emulator_launcher()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=PACKAGE):
        emulator_launcher()


def test_an_interrupted_save_is_recovered(tmp_path: Path) -> None:
    def snapshot_dir(name: str, marker: str) -> None:
        (tmp_path / name).mkdir()
        (tmp_path / name / "snapshot.overall_export_metadata").write_text(marker)

    snapshot_dir("snapshot-1-2.old", "previous")  # set aside ...
    snapshot_dir("snapshot-1-2", "newer")  # ... for this finished export, then the process died
    (tmp_path / "snapshot-3-4").mkdir()  # an export that never finished
    emulator = FirestoreEmulator(launcher=emulator_launcher())
    emulator.data_dir = tmp_path
    emulator._recover_snapshot()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshot"]
    assert (tmp_path / "snapshot" / "snapshot.overall_export_metadata").read_text() == "newer"
