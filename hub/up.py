"""``hub up``: the whole hub on this machine with no SaaS account — the embedded default.

Starts a redis-server (AOF on, unless REDIS_URL is given), the four stand-ins, provisions the
config's tables/properties/merge fields, then runs the Procfile's processes (web, worker, cron,
listen) as children with the sandbox's settings, registers the webhooks, and prints how to try it.
The ops channel's messages (`notify`) are printed on this console. Ctrl-C stops everything.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click

from hub.errors import ConfigError

# gunicorn's own limit for its workers to finish their requests, and how long `hub up` waits for
# all its processes after SIGTERM before it kills what is left (a worker's job takes seconds).
_GUNICORN_GRACE = 10
_STOP_WAIT = 25
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise ConfigError(f"{what} did not come up within {timeout:.0f}s")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class OpsConsole:
    """A loopback endpoint standing in for the team's Slack: prints each `notify` message."""

    def __init__(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    text = json.loads(raw).get("text", "")
                except ValueError:
                    text = raw.decode(errors="replace")
                click.secho(f"[{self.path.strip('/') or 'ops'}] {text}", fg="yellow")
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        _ = outer

    def stop(self) -> None:
        self.server.shutdown()


def _redis(data: Path) -> tuple[str, subprocess.Popen[bytes] | None]:
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"], None
    exe = shutil.which("redis-server")
    if exe is None:
        raise ConfigError("redis-server is not installed: `apt-get install redis-server` (or set REDIS_URL)")
    port = _free_port()
    (data / "redis").mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data / "redis"),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--protected-mode",
            "no",
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Out of the terminal's process group: Ctrl-C would stop Redis at once, while the worker and
        # the web app still finish their jobs against it. It is stopped last, below.
        start_new_session=True,
    )
    _wait(lambda: _port_open(port), "redis-server")
    return f"redis://127.0.0.1:{port}/0", proc


def _secret(data: Path, name: str, *, url_safe: bool = False) -> str:
    """A webhook secret for this machine, kept in the data directory (never in the repo)."""
    path = data / "secrets.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    if name not in known:
        known[name] = (
            secrets.token_urlsafe(24) if url_safe else "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        )
        path.write_text(json.dumps(known))
        path.chmod(0o600)
    return str(known[name])


def run(config_dir: Path, data: Path, port: int, firestore: bool) -> None:
    from hub.sandbox import runner

    data.mkdir(parents=True, exist_ok=True)
    # Ctrl-C, SIGTERM and a closed terminal (SIGHUP) stop the hub, also while it starts (and Ctrl-C
    # even when started from a shell that ignores it).
    for signum in _STOP_SIGNALS:
        signal.signal(signum, signal.default_int_handler)
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    redis_url, redis_proc = _redis(data)
    ops = OpsConsole()
    box = None
    try:
        try:
            box = runner.start(data_dir=data / "sandbox", firestore=firestore)
        except ConfigError as exc:
            if not firestore:
                raise
            click.secho(f"note: Firestore emulator not started ({exc}); Firestore mappings will not sync", fg="cyan")
            box = runner.start(data_dir=data / "sandbox", firestore=False)
        public = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            **box.env,
            "REDIS_URL": redis_url,
            "HUB_CONFIG": str(config_dir.resolve()),
            "HUB_PUBLIC_URL": public,
            "HUB_OPS_WEBHOOK_URL": ops.url + "/ops",
            "MAILCHIMP_WEBHOOK_SECRET": _secret(data, "mailchimp", url_safe=True),
            "FIRESTORE_RELAY_SECRET": _secret(data, "firestore-relay"),
        }
        python = sys.executable
        check = subprocess.run([python, "-m", "hub.cli", "check"], env=env, capture_output=True, text=True, check=False)
        click.echo(check.stdout.strip() or check.stderr.strip())
        subprocess.run([python, "-m", "hub.cli", "provision"], env=env, check=True, stdout=subprocess.DEVNULL)
        commands = {
            "web": [
                python,
                "-m",
                "gunicorn",
                "--workers",
                "2",
                "--threads",
                "8",
                "--bind",
                f"127.0.0.1:{port}",
                # Its workers are stopped by gunicorn itself, well within the wait in `_stop_all`.
                "--graceful-timeout",
                str(_GUNICORN_GRACE),
                "--no-control-socket",
                "hub.app:create_app()",
            ],
            "worker": [python, "-m", "hub.cli", "worker"],
            "cron": [python, "-m", "rq.cli", "cron", "--url", redis_url, "hub.cron"],
        }
        if box.firestore is not None:
            commands["listen"] = [python, "-m", "hub.cli", "listen"]
        for name, cmd in commands.items():
            # Each in a process group of its own: the terminal's Ctrl-C reaches `hub up` alone, which
            # then stops each child with one SIGTERM. Sent to the whole group, Ctrl-C also hit
            # gunicorn's workers beside their master's own signal, and a worker stopping twice at
            # once hangs in its thread pool's shutdown, keeping the port after `hub up` is gone.
            children.append((name, subprocess.Popen(cmd, env=env, start_new_session=True)))
        _wait(lambda: _port_open(port), "the web app")
        setup = subprocess.run(
            [python, "-m", "hub.cli", "webhooks", "setup", "--public-url", public],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if setup.returncode != 0:
            click.secho(f"webhook setup reported a problem:\n{setup.stderr.strip()[-2000:]}", fg="red")
        _welcome(box.env, public, data)
        while True:
            time.sleep(1.0)
            for name, proc in children:
                if proc.poll() is not None:
                    raise ConfigError(f"the {name} process exited with code {proc.returncode}")
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM or SIGHUP
        pass
    finally:
        _stop_all(children)
        if box is not None:
            box.stop()
        ops.stop()
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)


def _stop_all(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    """SIGTERM to each child (gunicorn and rq stop gracefully on it), then their whole process
    groups killed if they are not gone within `_STOP_WAIT` or on a second Ctrl-C: nothing outlives
    `hub up` to hold its port or its queues."""
    click.echo("stopping… (Ctrl-C again to kill at once)")
    force = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: force.set()) for signum in _STOP_SIGNALS}
    try:
        for _, proc in children:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + _STOP_WAIT
        while any(proc.poll() is None for _, proc in children):
            if force.is_set() or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for name, proc in children:
            # The group too: a gunicorn master killed here would leave its workers behind.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
            if proc.poll() is None:
                click.secho(f"the {name} process had not stopped: killed", fg="red")
            proc.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _welcome(env: dict[str, str], public: str, data: Path) -> None:
    hs, token = env["HUBSPOT_HOST"], env["HUBSPOT_ACCESS_TOKEN"]
    click.secho(f"\nThe hub is up: {public}  (health: {public}/readyz)", fg="green", bold=True)
    click.echo(
        f"Stand-ins: Airtable {env['AIRTABLE_ENDPOINT_URL']}, HubSpot {hs}, Mailchimp {env['MAILCHIMP_HOST']}"
        + (f", Firestore emulator {env['FIRESTORE_EMULATOR_HOST']}" if "FIRESTORE_EMULATOR_HOST" in env else "")
    )
    click.echo(f"State is kept in {data}/ (delete it to start over). Try it — a new lead in HubSpot:\n")
    body = json.dumps(
        {
            "properties": {
                "email": "pierre@example.com",
                "firstname": "Pierre",
                "hub_status": "lead",
                "hub_marketing_consent": "true",
            }
        }
    )
    click.echo(
        f"  curl -s -X POST {hs}/crm/v3/objects/contacts -H 'Authorization: Bearer {token}' \\\n"
        f"       -H 'Content-Type: application/json' -d '{body}'\n"
    )
    click.echo(
        "HubSpot's webhook reaches the hub, the contact appears in Airtable's Clients table and in the "
        "Mailchimp audience, and the welcome rule tags it. Then: `hub runs`, `hub waits`, `hub failed list` "
        "(with the same REDIS_URL). Ctrl-C stops everything.\n"
    )
