"""Running rules: record events and webhooks in, waits scheduled, guarded firings executed once.

Each firing is isolated: an expression error is recorded and the batch goes on; an action that
fails moves its firing to a job of its own (retried with backoff if transient, kept in the failed
registry with its reason if permanent) so one bad action never holds back other records.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis

from hub import clock, jobs
from hub.config.loader import CompiledRule, Config
from hub.config.rules import WebhookTrigger
from hub.engine import evaluate, history, waits
from hub.engine.entities import key_hash
from hub.engine.evaluate import RecordEvent
from hub.engine.guards import Ask, Guarded, Guards
from hub.engine.live import LiveContext
from hub.engine.once import action_key, run_once
from hub.engine.record import Loader, assemble, missing_fields
from hub.engine.state import RecordState
from hub.engine.sync import drain, outbox_name
from hub.errors import ExpressionError, HubError, PermanentError, TransientError
from hub.expr import parse_duration
from hub.jobs import hub_job
from hub.mapping.values import to_json
from hub.runtime import Runtime

log = logging.getLogger("hub.rules")
FIRING_JOB = "hub.engine.rules.run_firing"


@hub_job
def run_events(events: list[dict[str, Any]]) -> dict[str, int]:
    """Rules for a batch of record events (from sync)."""
    return run_record_events(Runtime.current(), events, outbox=outbox_name())


def run_record_events(rt: Runtime, events: list[dict[str, Any]], *, outbox: str) -> dict[str, int]:
    """Rules for a batch of record events. Writes made by their actions and computed fields go to
    ``outbox``, drained at the end (and first, if a previous attempt was killed before it could)."""
    from hub.engine.replay import remember

    remember(rt.redis, events, clock.now())
    drain(rt, outbox)  # what a killed attempt left
    loader = Loader(rt)
    by_entity: dict[str, list[tuple[str, set[str] | None, str | None]]] = {}
    for ev in events:
        if ev["kind"] != "deleted" and ev.get("key") and ev["entity"] in rt.config.mappings:
            missing = missing_fields(rt, ev["entity"], ev.get("values") or {})
            if missing:
                by_entity.setdefault(ev["entity"], []).append((ev["key"], missing, ev.get("system")))
    for entity, wanted in by_entity.items():
        loader.prefetch(entity, wanted)
    counts: dict[str, int] = {}
    recorder = history.Buffer(rt.redis)
    firings = Firings(rt, outbox=outbox, recorder=recorder)
    try:
        outcomes = [o for ev in events for o in handle_record_event(rt, ev, firings, loader=loader)]
        for outcome in outcomes + firings.run():
            counts[outcome] = counts.get(outcome, 0) + 1
    finally:
        recorder.flush()
    drain(rt, outbox)
    return counts


def handle_record_event(
    rt: Runtime, ev_json: dict[str, Any], firings: Firings, *, loader: Loader | None = None
) -> list[str]:
    """Waits scheduled for one record event (their outcomes), its firings added to ``firings``."""
    cfg = rt.config
    entity = ev_json["entity"]
    ev = RecordEvent(
        kind=ev_json["kind"],
        entity=entity,
        key=ev_json.get("key") or "",
        changes={k: (v[0], v[1]) for k, v in (ev_json.get("changes") or {}).items()},
        occurrence=ev_json["occurrence"],
    )
    if ev.kind == "deleted":
        waits.cancel_for_record(rt.redis, entity, ev.key)
    caused_by = ev_json.get("caused_by")
    matching = [
        r for r in cfg.rules.values() if r.model.enabled and r.id != caused_by and evaluate.trigger_matches(r, ev)
    ]
    if not matching:
        return []
    record = (
        None
        if ev.kind == "deleted"
        else assemble(
            rt,
            entity,
            ev.key,
            ev_json.get("values") or {},
            ev_json.get("system"),
            loader=loader,
            computed=ev_json.get("computed") or (),
        )
    )
    outcomes = []
    event = {"kind": ev.kind, "changes": ev_json.get("changes") or {}, "system": ev_json.get("system")}
    for rule in matching:
        if rule.model.wait is not None:
            outcomes.append(waits.schedule(rt, rule, ev_json, record))
            continue
        firings.add(rule, record, event, ev.occurrence, entity=entity, key=ev.key, changed=list(ev.changes))
    return outcomes


def fire(
    rt: Runtime,
    rule: CompiledRule,
    record: dict[str, Any] | None,
    event: dict[str, Any],
    occurrence: str,
    *,
    entity: str | None,
    key: str | None,
    changed: list[str] | None = None,
    isolated: bool = False,
    outbox: str | None = None,
    recorder: Any = None,
) -> str:
    """Evaluate and (once) execute ``rule`` for one trigger occurrence. Returns the outcome name."""
    batch = Firings(rt, outbox=outbox, recorder=recorder)
    batch.add(rule, record, event, occurrence, entity=entity, key=key, changed=changed)
    return batch.run(isolated=isolated)[0]


class _Firing:
    """One firing from its evaluation to its outcome, and the history entry it leaves."""

    def __init__(
        self,
        rule: CompiledRule,
        record: dict[str, Any] | None,
        event: dict[str, Any],
        occurrence: str,
        entity: str | None,
        key: str | None,
        changed: list[str] | None,
        at: str,
    ) -> None:
        self.rule, self.record, self.event, self.occurrence = rule, record, event, occurrence
        self.entity, self.key, self.changed = entity, key, changed
        self.started = time.monotonic()
        self.entry: dict[str, Any] = {
            "at": at,
            "rule": rule.id,
            "entity": entity,
            "record": key_hash(key) if key else None,
            "trigger": event.get("kind") or event.get("type"),
            "occurrence": key_hash(occurrence),
        }
        self.ask: Ask | None = None  # what the guards are asked, once the rule would fire
        self.outcome = ""

    def done(self, decision: str, reason: str, **extra: Any) -> str:
        ms = round((time.monotonic() - self.started) * 1000, 2)
        self.entry.update(decision=decision, reason=reason, ms=ms, **extra)
        self.outcome = decision
        return decision

    def evaluate(self, cfg: Config) -> None:
        """Condition, consent and plan: decided here (skipped, error) or an ``ask`` for the guards."""
        rule, record = self.rule, self.record
        ctx = evaluate.context(rule, record, self.event, self.changed, cfg.rules_file.templates)
        try:
            if not evaluate.condition(rule, ctx):
                self.done("skipped", "condition is false")
                return
            if rule.marketing and not _consents(cfg, self.entity, record):
                self.done("skipped", "no marketing consent")
                return
            plan = [a.as_json() for a in evaluate.plan(rule, ctx)]
        except ExpressionError as exc:
            log.warning("%s", exc)
            self.done("error", str(exc))
            return
        m = rule.model
        budget = None
        if m.budget is not None and m.budget in cfg.rules_file.budgets:
            b = cfg.rules_file.budgets[m.budget]
            budget = (m.budget, b.max, int(b.per.total_seconds()))
        self.ask = Ask(rule_id=rule.id, occurrence=self.occurrence, record=key_hash(self.key) if self.key else "-",
                       plan=plan, now=clock.now(), timezone=cfg.rules_file.settings.timezone,
                       cooldown_s=int(m.cooldown.total_seconds()) if m.cooldown else None,
                       daily_limit=m.daily_limit, budget=budget)  # fmt: skip

    def execute(
        self, rt: Runtime, decision: Guarded, outbox: str | None, isolated: bool, writes: _Writes | None = None
    ) -> str:
        """The decided plan's actions, each once; a failure gives the firing a job of its own.
        ``writes``: where its record-state writes wait to be applied with the batch's others."""
        if not decision.fire:
            return self.done("skipped", decision.reason)
        rule, occurrence = self.rule, self.occurrence
        results = []
        for planned in decision.plan:
            step = planned["step"]
            spec = _spec(rule, step)
            if spec is None:
                gone = "skipped (step removed from config)"
                results.append({"step": step, "action": planned["action"], "outcome": gone})
                continue
            akey = action_key(rule.id, occurrence, step)
            queue = writes.calls if writes is not None else None
            live = LiveContext(rt, rule_id=rule.id, entity=self.entity, record=self.record, event=self.event, key=akey,
                               record_key=self.key, outbox=outbox, one_write=not spec.external,
                               defer=queue)  # fmt: skip
            args = spec.args.model_validate(planned["args"])
            try:
                if spec.external:
                    if writes is not None:
                        writes.flush()  # the writes before it happen before it
                    status, _ = run_once(rt.redis, akey, lambda s=spec, a=args, c=live: s.run(c, a))
                else:  # one write of the record state, made once by its own done marker
                    out = spec.run(live, args) or {}
                    if out.get("deferred") and writes is not None:
                        item = {"step": step, "action": planned["action"], "outcome": "done"}
                        writes.items.append((self, item))
                        results.append(item)
                        continue
                    status = "already" if out.get("already") else "done"
            except redis.RedisError:
                raise  # Redis is down: the whole job is retried when it is back
            except Exception as exc:  # one action's failure stays with its firing, whatever it is
                if not isinstance(exc, HubError):
                    log.exception("rule %s %s (%s): unexpected error", rule.id, step, planned["action"])
                    exc = PermanentError(f"{type(exc).__name__}: {exc}", system="hub", obj=planned["action"])
                results.append({"step": step, "action": planned["action"], "outcome": "failed", "error": str(exc)})
                self.done("failed", str(exc), actions=results)
                if isolated:
                    raise
                _isolate(rt, rule, self.record, self.event, occurrence, self.entity, self.key, self.changed, exc)
                return self.outcome
            results.append({"step": step, "action": planned["action"], "outcome": status})
        return self.done("fired", decision.reason, actions=results)


class _Writes:
    """The record-state writes of a batch's one-write actions (``record.set``, ``record.upsert``),
    applied together: before the next external action, and at the end of the batch."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.calls: list[dict[str, Any]] = []  # filled by LiveContext
        self.items: list[tuple[_Firing, dict[str, Any]]] = []  # the firing and action result of each

    def pending(self, firing: _Firing) -> bool:
        return any(f is firing for f, _ in self.items)

    def flush(self) -> None:
        if not self.calls:
            return
        applied = RecordState(self.rt.redis).apply_many(self.calls)
        for result, (_, item) in zip(applied, self.items, strict=True):
            item["outcome"] = "already" if result.already else "done"
        self.clear()

    def clear(self) -> None:
        """Forget the queued writes (in place: a LiveContext holds ``calls`` to queue on)."""
        self.calls.clear()
        self.items.clear()


class Firings:
    """Firings gathered over a batch of events: evaluated as they come, their guards then decided in
    one round trip, and their actions run in the order the firings came. Every firing leaves its
    history entry, in that order too."""

    def __init__(self, rt: Runtime, *, outbox: str | None = None, recorder: Any = None) -> None:
        self.rt, self.outbox, self.recorder = rt, outbox, recorder
        self.firings: list[_Firing] = []
        self.writes = _Writes(rt) if outbox else None  # without a job's outbox each write drains at once
        self._at: str | None = None  # when the batch's firings were evaluated (history), written once

    def add(
        self,
        rule: CompiledRule,
        record: dict[str, Any] | None,
        event: dict[str, Any],
        occurrence: str,
        *,
        entity: str | None,
        key: str | None,
        changed: list[str] | None = None,
    ) -> None:
        if self._at is None:
            self._at = to_json(clock.now())
        firing = _Firing(rule, record, event, occurrence, entity, key, changed, self._at)
        firing.evaluate(self.rt.config)
        self.firings.append(firing)

    def run(self, *, isolated: bool = False) -> list[str]:
        """Decide and act; the outcome of each firing, in order."""
        firings, self.firings, self._at = self.firings, [], None
        asked = [f for f in firings if f.ask is not None]
        try:
            if asked:
                decisions = Guards(self.rt.redis).decide([f.ask for f in asked if f.ask is not None])
                for firing, decision in zip(asked, decisions, strict=True):
                    firing.execute(self.rt, decision, self.outbox, isolated, self.writes)
                if self.writes is not None:
                    self.writes.flush()
        finally:
            for firing in firings:  # not one whose write was never applied (Redis failed: the job is retried)
                if firing.outcome and not (self.writes is not None and self.writes.pending(firing)):
                    self._record(firing.entry)
            if self.writes is not None:
                self.writes.clear()  # applied, or never to be (the job is retried)
        return [f.outcome for f in firings]

    def _record(self, entry: dict[str, Any]) -> None:
        if self.recorder is not None:
            self.recorder(entry)
        else:
            history.record(self.rt.redis, entry)


def _spec(rule: CompiledRule, step: str) -> Any:
    from hub.config.steps import walk

    for s in walk(rule.steps):
        if s.path == step:
            return s.spec
    return None


def _consents(cfg: Config, entity: str | None, record: dict[str, Any] | None) -> bool:
    if entity is None or record is None:
        return True
    consent = cfg.mapping(entity).consent
    return consent is None or record.get(consent) is True


def _isolate(
    rt: Runtime,
    rule: CompiledRule,
    record: dict[str, Any] | None,
    event: dict[str, Any],
    occurrence: str,
    entity: str | None,
    key: str | None,
    changed: list[str] | None,
    exc: HubError,
) -> None:
    """Give a failed firing its own job: retried (transient) or parked in the failed registry (permanent)."""
    # A transient failure waits (its Retry-After, or 2 s) on rq's scheduler; a permanent one runs
    # again at once, fails again, and stays in the failed registry with its reason.
    when = _in(exc.retry_after or 2) if isinstance(exc, TransientError) else None
    jobs.enqueue(
        rt.redis,
        FIRING_JOB,
        rule.id,
        to_json(record),
        event,
        occurrence,
        entity,
        key,
        changed or [],
        job_id=f"firing-{action_key(rule.id, occurrence, 'job')}",
        unique=True,
        at=when,
    )


def _in(seconds: float) -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(seconds=seconds)


@hub_job
def run_firing(
    rule_id: str,
    record: dict[str, Any] | None,
    event: dict[str, Any],
    occurrence: str,
    entity: str | None,
    key: str | None,
    changed: list[str],
) -> str:
    """One firing on its own (after a failure): errors propagate so rq retries or parks it."""
    rt = Runtime.current()
    rule = rt.config.rules.get(rule_id)
    if rule is None:
        return "rule no longer exists"
    typed = record
    if entity is not None and record is not None:
        from hub.mapping.translate import normalize

        typed = normalize(rt.config.mapping(entity), record).values
    return fire(rt, rule, typed, event, occurrence, entity=entity, key=key, changed=changed, isolated=True)


def handle_webhook(rt: Runtime, name: str, payload: dict[str, Any], msg_id: str) -> list[str]:
    """Rules triggered by the generic inbound webhook ``name``."""
    cfg = rt.config
    hook = cfg.rules_file.webhooks.get(name)
    outcomes = []
    for rule in cfg.rules.values():
        w = rule.model.when
        if not (rule.model.enabled and isinstance(w, WebhookTrigger) and w.webhook == name):
            continue
        record, entity, key = None, None, None
        if hook is not None and hook.entity and hook.match:
            entity = hook.entity
            value = payload.get(hook.match)
            if value not in (None, ""):
                from hub.engine.record import find_record

                key, record = find_record(rt, entity, hook.match, value)
        event = {"kind": "webhook", "type": name, "data": payload, "id": msg_id}
        occurrence = f"webhook:{name}:{msg_id}"
        if rule.model.wait is not None:
            ev_json = {
                "entity": entity,
                "key": key,
                "kind": "webhook",
                "occurrence": occurrence,
                "event": event,
                "values": to_json(record) if record else {},
            }
            outcomes.append(waits.schedule(rt, rule, ev_json, record))
            continue
        outcomes.append(fire(rt, rule, record, event, occurrence, entity=entity, key=key))
    return outcomes


def occurrence_for_tick(rule: CompiledRule, now: Any) -> str:
    """The schedule slot a scheduled run belongs to, so a duplicate cron enqueue does nothing twice."""
    from croniter import croniter

    w = rule.model.when
    cron = getattr(w, "cron", None)
    if cron:
        slot = (
            croniter(cron, now).get_prev(type(now))
            if not croniter.match(cron, now)
            else now.replace(second=0, microsecond=0)
        )
        return f"tick:{slot.isoformat()}"
    every = getattr(w, "every", None) or parse_duration("1d")
    seconds = max(int(every.total_seconds()), 1)
    return f"tick:{int(now.timestamp()) // seconds * seconds}"
