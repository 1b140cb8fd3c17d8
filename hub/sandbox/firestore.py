"""Google's own Firestore emulator, found, started and stopped for the sandbox and the tests.

Firestore is the one service the hub does not re-implement: the emulator *is* Firestore's
behaviour (queries, cursors, transforms, listeners), so it is the truest stand-in there is. It
ships as the Debian package ``google-cloud-cli-firestore-emulator``: a bash launcher that runs
``java -cp cloud-firestore-emulator.jar``. The launcher does not ``exec`` java, so the emulator is
started in its own process group and stopped by signalling the whole group.

Persistence (``data_dir``): on :meth:`FirestoreEmulator.save` and on a clean :meth:`stop` the
documents of *one* project (``project``) are exported through the emulator's REST export; the next
start seeds from that snapshot with ``--import-data``. Two emulator facts shape this: its
``--export-on-exit`` flag wrote nothing on SIGTERM or ``/shutdown`` in version 1.19.9, and an
imported snapshot seeds *every* project id a client opens. Imported documents also get new
create/update times (the stamp field the connector writes survives, which is why it writes one).
A crash (SIGKILL) loses what changed since the last save.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import requests

from hub.errors import ConfigError
from hub.sandbox.procs import live_processes

PACKAGE = "google-cloud-cli-firestore-emulator"
LAUNCHER = "cloud_firestore_emulator"
KNOWN_PATH = Path("/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator") / LAUNCHER
ENV_BIN = "FIRESTORE_EMULATOR_BIN"
DEFAULT_PROJECT = "demo-hub"
SNAPSHOT = "snapshot"  # export name inside data_dir: data_dir/snapshot/snapshot.overall_export_metadata


class EmulatorMissing(ConfigError):
    """The emulator (or the Java it needs) is not installed."""


class EmulatorError(RuntimeError):
    """The emulator did not start, answer or stop as expected."""


def _dpkg_launcher() -> Path | None:
    """The launcher among the Debian package's files, if dpkg knows the package."""
    dpkg = shutil.which("dpkg")
    if dpkg is None:
        return None
    try:
        out = subprocess.run([dpkg, "-L", PACKAGE], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        path = Path(line.strip())
        if path.name == LAUNCHER and path.is_file():
            return path
    return None


def find_emulator(env: Mapping[str, str] | None = None) -> Path:
    """The emulator launcher: ``$FIRESTORE_EMULATOR_BIN``, else the Debian package's, else the known path."""
    env = os.environ if env is None else env
    override = env.get(ENV_BIN)
    if override:
        path = Path(override)
        if not path.is_file():
            raise EmulatorMissing(f"{ENV_BIN}={override!r} is not a file (unset it to use the {PACKAGE} package)")
        return path
    found = _dpkg_launcher()
    if found is not None:
        return found
    if KNOWN_PATH.is_file():
        return KNOWN_PATH
    raise EmulatorMissing(
        f"the Firestore emulator is not installed: apt-get install -y {PACKAGE} "
        f"(Google Cloud SDK apt repository), or set {ENV_BIN} to its {LAUNCHER} launcher"
    )


def require_java(env: Mapping[str, str] | None = None) -> None:
    """Fail clearly when the Java the launcher runs (``$JAVA`` or ``java``) is missing."""
    env = os.environ if env is None else env
    java = env.get("JAVA") or "java"
    if shutil.which(java) is None:
        raise EmulatorMissing(
            f"the Firestore emulator needs Java 11 or later ({java!r} not found): "
            "apt-get install -y openjdk-17-jre-headless"
        )


def _check_project(project: str) -> str:
    if not project or "/" in project or project.strip() != project:
        raise ValueError(f"not a usable Firestore project id: {project!r}")
    return project


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_free(host: str, port: int) -> bool:
    """Nobody listens there (connections of a previous run in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is left in process group ``pgid``.

    Zombies count as gone: the orphaned java is reparented to PID 1, which may never reap it.
    """
    if not Path("/proc").is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return any(p.pgid == pgid for p in live_processes().values())


def exports(host_port: str, project: str = DEFAULT_PROJECT) -> dict[str, str]:
    """The settings that point firebase-admin (and the hub's connector) at the emulator."""
    if ":" not in host_port:
        raise ValueError(f"expected HOST:PORT, got {host_port!r}")
    return {"FIRESTORE_EMULATOR_HOST": host_port, "GOOGLE_CLOUD_PROJECT": _check_project(project)}


class FirestoreEmulator:
    """One emulator process group on loopback, with an optional data directory."""

    def __init__(
        self,
        *,
        launcher: Path | None = None,
        project: str = DEFAULT_PROJECT,
        startup_timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._env = dict(os.environ if env is None else env)
        self.launcher = launcher or find_emulator(self._env)
        self.project = _check_project(project)
        self.startup_timeout = startup_timeout
        self.host = "127.0.0.1"
        self.port = 0
        self.data_dir: Path | None = None
        self.startup_seconds: float | None = None  # wall time from spawn to first answer
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: collections.deque[str] = collections.deque(maxlen=200)
        self._reader: threading.Thread | None = None

    # -- addresses -------------------------------------------------------------------------------
    @property
    def host_port(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def snapshot_metadata(self) -> Path | None:
        if self.data_dir is None:
            return None
        return self.data_dir / SNAPSHOT / f"{SNAPSHOT}.overall_export_metadata"

    def exports(self) -> dict[str, str]:
        return exports(self.host_port, self.project)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(list(self._log)[-lines:])

    # -- lifecycle -------------------------------------------------------------------------------
    def start(
        self, host: str = "127.0.0.1", port: int = 0, data_dir: str | os.PathLike[str] | None = None
    ) -> FirestoreEmulator:
        """Spawn the emulator and wait until its HTTP port answers (``port=0`` picks a free one)."""
        if self.running:
            raise EmulatorError(f"the emulator is already running on {self.host_port}")
        if port < 0 or port > 65535:
            raise ValueError(f"port must be 0..65535, got {port!r}")
        require_java(self._env)
        self.host = host
        self.data_dir = Path(data_dir) if data_dir is not None else None
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._recover_snapshot()
        # The emulator cannot bind port 0 itself (it then advertises :0), so pick one; another
        # process may grab it between our check and java's bind, hence a few tries.
        attempts = 3 if port == 0 else 1
        if port and not _port_free(host, port):  # else another server could answer our readiness poll
            raise EmulatorError(f"port {port} on {host} is already in use")
        for attempt in range(1, attempts + 1):
            self.port = port or _free_port(host)
            began = time.monotonic()
            self._spawn()
            if self._wait_ready():
                self.startup_seconds = time.monotonic() - began
                atexit.register(self.stop)
                return self
            self._kill_group()  # also drains the output reader, so the tail is complete
            tail = self.log_tail()
            if attempt < attempts and ("BindException" in tail or "already in use" in tail):
                continue
            raise EmulatorError(
                f"the Firestore emulator did not answer on {self.url} within {self.startup_timeout:.0f}s;"
                f" last output:\n{tail}"
            )
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        args = [str(self.launcher), "start", "--host", self.host, "--port", str(self.port)]
        meta = self.snapshot_metadata
        if meta is not None and meta.is_file():
            args += ["--import-data", str(meta)]
        self._log.clear()
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() signals bash *and* java
            env=self._env,
        )
        assert self.proc.stdout is not None
        self._reader = threading.Thread(
            target=self._read_output, args=(self.proc.stdout,), name="firestore-emulator-log", daemon=True
        )
        self._reader.start()

    def _read_output(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self._log.append(raw.decode("utf-8", "replace").rstrip())
        stream.close()

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                if requests.get(self.url + "/", timeout=1).status_code == 200:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.05)
        return False

    def save(self) -> Path | None:
        """Export ``project``'s documents to ``data_dir`` (atomically replacing the last snapshot)."""
        if self.data_dir is None or not self.running:
            return None
        staging = f"{SNAPSHOT}-{os.getpid()}-{time.time_ns()}"
        resp = requests.post(
            f"{self.url}/emulator/v1/projects/{self.project}:export",
            json={
                "database": f"projects/{self.project}/databases/(default)",
                "export_directory": str(self.data_dir.resolve()),
                "export_name": staging,
            },
            timeout=60,
        )
        if resp.status_code != 200:
            raise EmulatorError(f"emulator export failed ({resp.status_code}): {resp.text[:300]}")
        # The metadata file is named after the export; rename it so the snapshot has one fixed name.
        staged = self.data_dir / staging
        (staged / f"{staging}.overall_export_metadata").rename(staged / f"{SNAPSHOT}.overall_export_metadata")
        final = self.data_dir / SNAPSHOT
        old = self.data_dir / f"{staging}.old"
        if final.exists():
            final.rename(old)
        staged.rename(final)
        shutil.rmtree(old, ignore_errors=True)
        return final

    def _recover_snapshot(self) -> None:
        """Finish or undo a save that was interrupted between its renames."""
        assert self.data_dir is not None
        final = self.data_dir / SNAPSHOT
        # A finished export first (newest first), then the previous snapshot set aside for it.
        leftovers = sorted(
            self.data_dir.glob(f"{SNAPSHOT}-*"), key=lambda p: (p.name.endswith(".old"), -p.stat().st_mtime)
        )
        for leftover in leftovers:
            if not final.exists() and (leftover / f"{SNAPSHOT}.overall_export_metadata").is_file():
                leftover.rename(final)
            else:
                shutil.rmtree(leftover, ignore_errors=True)

    def reset(self, project: str | None = None) -> None:
        """Delete every document of ``project`` (default: this emulator's project)."""
        name = _check_project(project or self.project)
        url = f"{self.url}/emulator/v1/projects/{name}/databases/(default)/documents"
        resp = requests.delete(url, timeout=30)
        if resp.status_code != 200:
            raise EmulatorError(f"emulator reset of {name} failed ({resp.status_code}): {resp.text[:300]}")

    def stop(self, *, save: bool = True, timeout: float = 15.0) -> None:
        """Save (with a data dir), then end the whole process group; no java is left behind."""
        atexit.unregister(self.stop)
        if self.proc is None:
            return
        if save and self.running:
            try:
                self.save()
            except (requests.RequestException, OSError, EmulatorError) as exc:
                self._log.append(f"[hub] save before stop failed: {exc}")
                print(f"warning: Firestore sandbox data not saved: {exc}", file=sys.stderr)
        self._kill_group(timeout)

    def _kill_group(self, timeout: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        pgid = proc.pid  # start_new_session made the launcher its group's leader
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            deadline = time.monotonic() + wait
            while _group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not _group_alive(pgid):
                break
        if proc.poll() is None:
            proc.wait(timeout=5)
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None
        if _group_alive(pgid):
            raise EmulatorError(f"emulator process group {pgid} survived SIGKILL")

    def __enter__(self) -> FirestoreEmulator:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hub.sandbox.firestore``: run the emulator, print its settings, stop on Ctrl-C."""
    parser = argparse.ArgumentParser(description="Run the Firestore emulator for the hub sandbox.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--data", default=None, help="directory kept across restarts")
    parser.add_argument("--project", default=DEFAULT_PROJECT)
    args = parser.parse_args(argv)
    emulator = FirestoreEmulator(project=args.project).start(args.host, args.port, args.data)
    for name, value in emulator.exports().items():
        print(f"export {name}={value}", flush=True)
    print(f"# Firestore emulator ready in {emulator.startup_seconds:.1f}s", file=sys.stderr, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5) and emulator.running:
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
