"""Operating the hub: run a scheduled rule now, read run history, backfill, replay, failed jobs,
pending waits and sync conflicts. Registered on the ``hub`` command group."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from hub import clock
from hub.cli import Ctx, _pin, main


def _runtime(ctx: Ctx) -> Any:
    from hub.runtime import Runtime

    rt = Runtime(config_dir=ctx.config)
    Runtime.install(rt)
    return rt


def _echo(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


@main.command("run")
@click.argument("rule_id")
@click.option("--now", default=None, help="Pin the clock (ISO 8601).")
@click.option("--dry-run", is_flag=True, help="Show what would happen, act on nothing.")
@click.pass_obj
def run_cmd(ctx: Ctx, rule_id: str, now: str | None, dry_run: bool) -> None:
    """Run the scheduled rule RULE_ID once now (a scan for `for_each` rules)."""
    from hub.config.issues import suggest
    from hub.engine.schedule import run_rule

    _pin(now)
    rt = _runtime(ctx)
    rule = rt.config.rules.get(rule_id)
    if rule is None:
        raise click.ClickException(f"unknown rule {rule_id!r}{suggest(rule_id, rt.config.rules)}")
    result = run_rule(rt, rule, dry_run=dry_run, manual=True)
    _echo({"rule": rule_id, "now": clock.now().isoformat(), "dry_run": dry_run, **result})


@main.command("runs")
@click.option("--rule", "rule_id", default=None, help="Only this rule.")
@click.option("--record", "record", default=None, help="Only this record (its key, e.g. email:x@y.z, or hash).")
@click.option("--limit", default=50, show_default=True)
@click.pass_obj
def runs_cmd(ctx: Ctx, rule_id: str | None, record: str | None, limit: int) -> None:
    """Show the run history, newest first."""
    from hub.engine import history

    rt = _runtime(ctx)
    for entry in history.read(rt.redis, rule=rule_id, record_key=record, limit=limit):
        actions = ", ".join(f"{a['action']}={a['outcome']}" for a in entry.get("actions", []))
        click.echo(
            f"{entry['at']}  {entry['rule']:<28} {entry.get('decision', ''):<9} "
            f"{entry.get('record') or '-':<16} {entry.get('reason', '')}{'  [' + actions + ']' if actions else ''}"
        )


@main.command("sync")
@click.argument("entity")
@click.option("--from", "source", required=True, help="System to read from.")
@click.option("--to", "target", required=True, help="System to write to.")
@click.option("--dry-run", is_flag=True)
@click.option("--restart", is_flag=True, help="Ignore a saved checkpoint and start from the first record.")
@click.pass_obj
def sync_cmd(ctx: Ctx, entity: str, source: str, target: str, dry_run: bool, restart: bool) -> None:
    """Backfill / repair: copy ENTITY from one system to another, page by page, resumable."""
    from dataclasses import asdict

    from hub.engine.backfill import backfill

    rt = _runtime(ctx)
    _echo(asdict(backfill(rt, entity, source, target, dry_run=dry_run, restart=restart)))


@main.command("replay")
@click.option("--since", required=True, help="ISO time: replay events received since then.")
@click.option(
    "--with-config",
    "candidate",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The changed config directory to compare with the running one.",
)
@click.pass_obj
def replay_cmd(ctx: Ctx, since: str, candidate: Path) -> None:
    """What the changed config would have done with the recent events (acts on nothing)."""
    from hub.config import loader
    from hub.engine.record import assemble
    from hub.engine.replay import recent, replay

    rt = _runtime(ctx)
    new_cfg = loader.load(candidate)
    for issue in new_cfg.issues:
        click.echo(f"warning: {issue}", err=True)

    def load(entity: str, key: str | None) -> Any:
        return assemble(rt, entity, key, {}, None, fresh=True) if key else None

    _echo(replay(rt.config, new_cfg, recent(rt.redis, clock.parse_instant(since)), load))


@main.group("failed")
def failed() -> None:
    """Jobs that failed for good: list them, retry them."""


@failed.command("list")
@click.pass_obj
def failed_list(ctx: Ctx) -> None:
    from rq.registry import FailedJobRegistry

    from hub import jobs

    rt = _runtime(ctx)
    for qname in jobs.QUEUES:
        reg = FailedJobRegistry(qname, connection=rt.redis, serializer=jobs.HubSerializer)
        for job in reg.get_job_ids():
            j = jobs.queue(rt.redis, qname).fetch_job(job)
            reason = (j.meta.get("reason") if j else None) or "see `rq info`"
            click.echo(f"{qname:<9} {job}  {j.func_name if j else '?'}  {reason}")


@failed.command("retry")
@click.argument("job_ids", nargs=-1)
@click.option("--all", "retry_all", is_flag=True)
@click.pass_obj
def failed_retry(ctx: Ctx, job_ids: tuple[str, ...], retry_all: bool) -> None:
    from rq.registry import FailedJobRegistry

    from hub import jobs

    rt = _runtime(ctx)
    n = 0
    for qname in jobs.QUEUES:
        reg = FailedJobRegistry(qname, connection=rt.redis, serializer=jobs.HubSerializer)
        for job_id in reg.get_job_ids():
            if retry_all or job_id in job_ids:
                reg.requeue(job_id)
                n += 1
    click.echo(f"requeued {n} job(s)")


@main.command("waits")
@click.option("--limit", default=100, show_default=True)
@click.pass_obj
def waits_cmd(ctx: Ctx, limit: int) -> None:
    """Pending waits, soonest first."""
    from hub.engine.waits import pending

    rt = _runtime(ctx)
    for w in pending(rt.redis, limit):
        click.echo(f"{w['due']}  {w['rule']:<28} {w['entity'] or '-':<10} {w['record'] or '-'}")


@main.command("conflicts")
@click.option("--limit", default=50, show_default=True)
@click.pass_obj
def conflicts_cmd(ctx: Ctx, limit: int) -> None:
    """Sync conflicts: edits refused by field ownership or overtaken by a later change."""
    from hub.engine.entities import key_hash

    rt = _runtime(ctx)
    for raw in rt.redis.lrange("hub:conflicts", 0, limit - 1):
        c = json.loads(raw)
        click.echo(
            f"{c['at']}  {c['entity']}.{c['field']} edited in {c['system']}: {c['reason']} "
            f"(record {key_hash(c['key'])})"
        )
    sys.stdout.flush()


@main.command("provision")
@click.option("--only", default=None, help="Comma-separated systems (default: all mapped).")
@click.pass_obj
def provision_cmd(ctx: Ctx, only: str | None) -> None:
    """Create the tables, fields, properties and merge fields the mappings need, where missing."""
    from hub.engine.provision import provision

    rt = _runtime(ctx)
    _echo(provision(rt, only={s.strip() for s in only.split(",")} if only else None))
