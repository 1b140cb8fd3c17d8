"""``hub webhooks setup`` (register the hub's endpoints at each provider) and ``hub listen`` (the
Firestore listener process). Each provider module in webhooks/ supplies the work."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import click

from hub.cli import Ctx, main
from webhooks import PROVIDERS


@main.group("webhooks")
def webhooks_group() -> None:
    """Register and inspect the webhooks that feed the hub."""


@webhooks_group.command("setup")
@click.option("--public-url", required=True, help="The hub's public base URL, e.g. https://hub.example.com")
@click.option("--only", default=None, help="Comma-separated providers (default: every mapped one).")
@click.pass_obj
def setup(ctx: Ctx, public_url: str, only: str | None) -> None:
    """Create or refresh the provider-side webhooks for every mapped object, list and base."""
    from hub.cli_ops import _runtime

    rt = _runtime(ctx)
    wanted = {p.strip() for p in only.split(",")} if only else None
    report = {}
    for name in PROVIDERS:
        if wanted is not None and name not in wanted:
            continue
        module = importlib.import_module(f"webhooks.{name}")
        fn = getattr(module, "setup", None)
        if fn is not None:
            report[name] = fn(rt, public_url.rstrip("/"))
    click.echo(json.dumps(report, indent=2, default=str))


@main.command("listen")
@click.pass_obj
def listen(ctx: Ctx) -> None:
    """Watch the mapped Firestore collections and feed their changes to the hub (a Procfile line)."""
    from hub.cli_ops import _runtime
    from webhooks.firestore import listen as run_listener

    run_listener(_runtime(ctx))


@main.command("sandbox")
@click.option("--port-base", type=int, default=None, help="Ports N..N+3 (airtable, hubspot, mailchimp, firestore).")
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None, help="Keep state here.")
@click.option("--no-firestore", is_flag=True, help="Skip the Firestore emulator.")
def sandbox(port_base: int | None, data_dir: str | None, no_firestore: bool) -> None:
    """Start local stand-ins of Airtable, HubSpot, Mailchimp and Firestore; print their settings."""
    import signal
    import threading

    from hub.sandbox import runner

    box = runner.start(port_base=port_base, data_dir=data_dir, firestore=not no_firestore)
    for name, value in sorted(box.env.items()):
        click.echo(f"export {name}={value}")
    click.echo(f"# sandbox up in {box.startup_seconds:.1f}s; Ctrl-C stops it", err=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        box.stop()
        click.echo("# sandbox stopped", err=True)


@main.command("up")
@click.option("--port", type=int, default=8000, show_default=True, help="Port of the web app (webhooks).")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".hub-data"),
    show_default=True,
    help="Where Redis and the stand-ins keep their state.",
)
@click.option("--no-firestore", is_flag=True, help="Do not start the Firestore emulator.")
@click.pass_obj
def up(ctx: Ctx, port: int, data_dir: Path, no_firestore: bool) -> None:
    """Run the whole hub locally on the stand-ins (no SaaS account): Redis, sandbox, web, worker, cron."""
    from hub.up import run

    run(ctx.config, data_dir, port, firestore=not no_firestore)
