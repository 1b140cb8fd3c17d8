"""The ``hub`` command line: check and export config, run workers, dry-run rules.

Global options: ``--config DIR`` (else ``HUB_CONFIG``, else the repo root) and ``--now ISO``
(else ``HUB_NOW``) to pin the clock for reproducible day counts.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from hub import clock
from hub.settings import REPO_ROOT


class Ctx:
    def __init__(self, config: Path) -> None:
        self.config = config


def _pin(now: str | None) -> None:
    if now:
        try:
            clock.pin(now)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--now") from None
        os.environ["HUB_NOW"] = now


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Config directory (rules.yaml + mappings/). Default: $HUB_CONFIG or the repo root.",
)
@click.option("--now", default=None, help="Pin the clock (ISO 8601), like HUB_NOW.")
@click.pass_context
def main(ctx: click.Context, config_dir: Path | None, now: str | None) -> None:
    """Low-code integration hub: Airtable, HubSpot, Firestore and Mailchimp, kept in sync by YAML."""
    if config_dir is not None:
        os.environ["HUB_CONFIG"] = str(config_dir)
    _pin(now)
    ctx.obj = Ctx(Path(os.environ.get("HUB_CONFIG") or REPO_ROOT))


def _load(ctx: Ctx) -> Any:
    from hub.config import loader

    return loader.load(ctx.config)


@main.command()
@click.pass_obj
def check(ctx: Ctx) -> None:
    """Validate rules.yaml and mappings/*.yaml; print every problem with file:line:col."""
    cfg = _load(ctx)
    for issue in cfg.issues:
        click.echo(str(issue))
    if cfg.issues:
        click.echo(
            f"{len(cfg.issues)} problem(s); {len(cfg.rules)} rule(s) would load, "
            f"refused: {', '.join(cfg.refused_rules) or 'none'}",
            err=True,
        )
        sys.exit(1)
    click.echo(f"ok: {len(cfg.mappings)} mapping(s), {len(cfg.rules)} rule(s) in {ctx.config}")


@main.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory to write schema/ into (default: the repo root).",
)
def schema(out: Path | None) -> None:
    """Write the JSON Schemas of rules.yaml and mapping files under schema/."""
    from hub.config import schema as schema_mod

    for path in schema_mod.write(out or REPO_ROOT):
        click.echo(f"wrote {path}")


@main.command()
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option("--name", default=None, help="Worker name (default: rq's).")
@click.option("--queues", default=None, help="Comma-separated queue names (default: all hub queues).")
def worker(burst: bool, name: str | None, queues: str | None) -> None:
    """Run an RQ worker (scheduler on, JSON serializer) for the hub's queues."""
    from hub import jobs
    from hub import worker as worker_mod

    names = tuple(q.strip() for q in queues.split(",")) if queues else jobs.QUEUES
    worker_mod.run(burst=burst, name=name, queue_names=names)


@main.group()
def rules() -> None:
    """Work with rules: dry runs."""


@rules.command("test")
@click.argument("rule_id")
@click.option(
    "--record",
    "record_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="A JSON file with the record's canonical fields.",
)
@click.option(
    "--event",
    "event_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A JSON file with the triggering event (webhook payload, changes).",
)
@click.option("--now", default=None, help="Pin the clock for this run (ISO 8601).")
@click.pass_obj
def rules_test(ctx: Ctx, rule_id: str, record_file: Path, event_file: Path | None, now: str | None) -> None:
    """Dry run: does RULE fire for the record, and which actions would it take? Prints JSON."""
    from hub.engine.dryrun import dry_run

    _pin(now)
    cfg = _load(ctx)
    try:
        record = json.loads(record_file.read_text(encoding="utf-8"))
        event = json.loads(event_file.read_text(encoding="utf-8")) if event_file else {}
    except ValueError as exc:
        raise click.ClickException(f"not valid JSON: {exc}") from None
    result = dry_run(cfg, rule_id, record, event)
    click.echo(json.dumps(result, indent=2, ensure_ascii=False, sort_keys=False))
    if "error" in result:
        sys.exit(1)


from hub import cli_ops, cli_webhooks  # noqa: E402,F401  (register their commands)

if __name__ == "__main__":
    # `python -m hub.cli` runs this file as __main__: use the group the other modules registered on.
    from hub.cli import main as registered

    registered()
