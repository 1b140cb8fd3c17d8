"""Engine benchmark: what the hub's declarative layer costs, and how many events the workers move.

1. Mapping + computed fields + condition per record, through the hub (YAML mapping, Jinja sandbox)
   against a hand-written Python function doing the same work, in this process. Goal: ≤ 2×.
2. End to end: contacts changed in the HubSpot stand-in, their webhook events queued in batches,
   `hub worker` processes (four: two per core) read them fresh, compute their risk score, sync them
   to the Mailchimp stand-in and run the rules; events/s from the first enqueue until every queue is
   empty, after a warm-up round, in three rounds (their median and each of them).
   Goal: ≥ 2,000/s.

Run: python bench/engine.py [--events 4000] [--rounds 3] [--workers 4]. Starts its own redis-server and stand-ins
on loopback (each stand-in in a process of its own); prints its figures; leaves nothing running.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.base import Collection, Record, Write  # noqa: E402
from hub import clock  # noqa: E402
from hub.config import loader  # noqa: E402
from hub.engine import evaluate  # noqa: E402
from hub.engine.record import with_computed  # noqa: E402
from hub.mapping.translate import complete, from_system  # noqa: E402
from tests.support.procs import RedisServer, wait_for  # noqa: E402

if TYPE_CHECKING:
    import redis

    from connectors.hubspot import HubSpotConnector

MAPPING = """\
entity: contact
identity: [email]
consent: consent
fields:
  email: {type: email, required: true}
  first_name: string
  phone: {type: phone, region: FR}
  total_spent: number
  cancellations: integer
  last_activity: datetime
  consent: bool
  risk:
    type: integer
    compute: >-
      min((40 if days_since(record.last_activity) > 90 else 30 if days_since(record.last_activity) > 60
      else 20 if days_since(record.last_activity) > 30 else 10 if days_since(record.last_activity) > 14 else 0)
      + (30 if record.total_spent > 1000 else 20 if record.total_spent > 500 else 10 if record.total_spent > 100
      else 0) + 5 * record.cancellations, 100)
systems:
  hubspot:
    object: contacts
    fields: {email: email, first_name: firstname, phone: phone, total_spent: nz_spent, cancellations: nz_cancel,
             last_activity: nz_last, consent: nz_consent}
  mailchimp:
    list: hubsandbx1
    fields: {email: email_address, first_name: merge_fields.FNAME, total_spent: merge_fields.SPENT,
             risk: merge_fields.RISK}
"""
RULES = """\
rules:
  - id: high_risk
    when: {updated: contact}
    if: record.consent and record.risk >= 70 and record.total_spent > 500
    do:
      - record.set: {fields: {first_name: "{{ record.first_name }}"}}
"""


def phonenumbers_e164(text: str) -> str | None:
    """The phone conversion a hand-written integration would use: phonenumbers' full parse."""
    import phonenumbers

    number = phonenumbers.parse(text, "FR")
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def hub_e164(text: str) -> str | None:
    """The hub's own conversion (a shortcut for plain national numbers), without its cache."""
    from hub.mapping.phone import to_e164

    return to_e164(text, "FR")


def hand_written(
    fields: dict[str, Any], now: datetime, e164: Callable[[str], str | None] = phonenumbers_e164
) -> tuple[dict[str, Any], bool]:
    """What a hand-written integration would do for the same record: the same parsing and the same
    checks (an email has an @, a phone number is possible), no framework."""
    email = str(fields["email"]).strip().lower()
    if "@" not in email:
        raise ValueError("not an email address")
    phone = e164(str(fields["phone"]).strip())
    if phone is None:
        raise ValueError("not a phone number")
    spent = float(fields["nz_spent"])
    cancel = int(fields["nz_cancel"])
    last = datetime.fromisoformat(str(fields["nz_last"]).replace("Z", "+00:00"))
    consent = str(fields["nz_consent"]).lower() == "true"
    days = math.floor((now - last).total_seconds() / 86400)
    inactivity = 40 if days > 90 else 30 if days > 60 else 20 if days > 30 else 10 if days > 14 else 0
    value = 30 if spent > 1000 else 20 if spent > 500 else 10 if spent > 100 else 0
    risk = min(inactivity + value + 5 * cancel, 100)
    record = {
        "email": email,
        "first_name": fields["firstname"],
        "phone": phone,
        "total_spent": spent,
        "cancellations": cancel,
        "last_activity": last,
        "consent": consent,
        "risk": risk,
    }
    return record, consent and risk >= 70 and spent > 500


def sample(i: int) -> dict[str, Any]:
    return {
        "email": f" Person{i}@Example.com ",
        "firstname": f"P{i}",
        "phone": f"06 12 34 {i % 100:02d} {i % 97:02d}",
        "nz_spent": str(50 + (i * 37) % 1500),
        "nz_cancel": str(i % 4),
        "nz_last": f"2026-0{1 + i % 5}-1{i % 9}T10:00:00Z",
        "nz_consent": "true" if i % 3 else "false",
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (Linux /proc), children excluded."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_times() -> list[int]:
    """The machine's CPU time so far by kind (Linux /proc/stat, clock ticks): user, nice, system,
    idle, iowait, irq, softirq, steal. Empty where there is no /proc."""
    try:
        return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return []


def _machine_share(start: list[int], end: list[int]) -> str:
    """How the cores spent the rounds: busy (anyone's work), idle, and stolen by the hypervisor
    (steal: a VM's CPU given to other guests, when it drifts slow)."""
    if len(start) < 8 or len(end) < 8:
        return ""
    d = [b - a for a, b in zip(start, end, strict=True)]
    spent = sum(d) or 1
    idle, steal = d[3] + d[4], d[7]
    busy = spent - idle - steal
    return f"{busy / spent:.0%} busy, {idle / spent:.0%} idle, {steal / spent:.0%} stolen by the hypervisor"


ROUNDS = 5
PINGS = 2000
ENDED = (b"finished", b"failed")  # an rq job's status once it ran


def _round_trip(redis_url: str, redis_pid: int) -> tuple[float, float]:
    """The machine's cost of one loopback round trip, now: CPU (this process + redis-server) and
    wall µs of a bare PING over a raw socket. Every Redis call and HTTP request of the run pays
    it; on a VM it drifts severalfold from minute to minute, and the events/s with it."""
    url = urlparse(redis_url)
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cpu = time.process_time() + _cpu_seconds(redis_pid)
        wall = time.perf_counter()
        for _ in range(PINGS):
            sock.sendall(b"PING\r\n")
            sock.recv(64)
        wall = time.perf_counter() - wall
        cpu = time.process_time() + _cpu_seconds(redis_pid) - cpu
    return cpu / PINGS * 1e6, wall / PINGS * 1e6


def bench_per_record(cfg_dir: Path, n: int = 20000) -> None:
    cfg = loader.load(cfg_dir)
    assert cfg.ok, [str(i) for i in cfg.issues]
    mapping = cfg.mappings["contact"]
    rule = cfg.rules["high_risk"]
    records = [Record(str(i), sample(i)) for i in range(n)]
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    clock.pin(now)

    def hub_path() -> int:
        from hub.mapping.values import clear_phone_cache

        clear_phone_cache()  # the hand-written function caches nothing: neither does the measured hub
        fired = 0
        for rec in records:
            values = complete(mapping, from_system(mapping, "hubspot", rec).values)
            record = with_computed(None, mapping, values)
            fired += evaluate.condition(rule, {"record": record})
        return fired

    def hand_path() -> int:
        return sum(hand_written(rec.fields, now)[1] for rec in records)

    def hand_hub_phone_path() -> int:
        return sum(hand_written(rec.fields, now, hub_e164)[1] for rec in records)

    assert hub_path() == hand_path() == hand_hub_phone_path(), "the paths must agree before they are timed"
    paths = (("hand-written", hand_path), ("hand-written, hub phone", hand_hub_phone_path), ("hub", hub_path))
    times: dict[str, list[float]] = {name: [] for name, _ in paths}
    for _ in range(ROUNDS):  # alternated, so a noisy moment on the shared machine hits all alike
        for name, fn in paths:
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    per = {name: min(ts) / n * 1e6 for name, ts in times.items()}
    print(f"per record (mapping + computed field + condition), {n} records, best of {ROUNDS} alternated rounds:")
    print(f"  hand-written Python (phonenumbers)       {per['hand-written']:8.1f} µs/record")
    print(f"  hand-written Python (the hub's E.164)    {per['hand-written, hub phone']:8.1f} µs/record")
    print(f"  hub (YAML + Jinja)                       {per['hub']:8.1f} µs/record")
    print(f"  ratio                                    {per['hub'] / per['hand-written']:8.2f}×   (goal ≤ 2×)")
    print(
        f"  ratio with the same phone conversion     {per['hub'] / per['hand-written, hub phone']:8.2f}×   "
        "(what the declarative layer itself costs)"
    )
    clock.pin(None)


def bench_end_to_end(
    cfg_dir: Path, events: int, n_workers: int, batch: int, rounds: int = 3, profile: str | None = None
) -> list[str]:
    """Prints the figures; returns the contacts that never reached Mailchimp (none, or a defect)."""
    import redis
    from rq.job import Job
    from rq.registry import ScheduledJobRegistry, StartedJobRegistry

    from connectors.base import FieldSpec
    from connectors.hubspot import HubSpotConnector
    from connectors.mailchimp import MailchimpConnector
    from hub import jobs
    from hub.engine.provision import provision
    from hub.runtime import Runtime
    from hub.sandbox import hubspot, mailchimp
    from hub.sandbox.common import serve_apart
    from hub.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    lost: list[str] = []
    completed = False
    redis_server = RedisServer(tmp / "redis").start()
    # Each stand-in in a process of its own, as the services run apart from the hub: in this one
    # they would share one GIL with each other and with the load generator.
    hs = serve_apart(
        lambda: hubspot.HubSpotStandIn(rate_limit=10**9, search_rate=10**6, webhook_window=3600), hubspot.exports
    )
    mc = serve_apart(lambda: mailchimp.MailchimpStandIn(connection_limit=10**6), mailchimp.exports)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        conn = redis.Redis.from_url(redis_server.url)
        env = {
            **os.environ,
            **hs.env,
            **mc.env,
            "REDIS_URL": redis_server.url,
            "HUB_CONFIG": str(cfg_dir),
            "HUBSPOT_RATE_LIMIT": "1000000",
            "HUBSPOT_SEARCH_RATE_LIMIT": "100000",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "HUB_NOW": "2026-06-01T12:00:00+00:00",
        }
        provision(Runtime(Settings(env), config_dir=cfg_dir, conn=conn))
        hsc = HubSpotConnector(
            env["HUBSPOT_ACCESS_TOKEN"], conn, host=hs.env["HUBSPOT_HOST"], rate=10**6, search_rate=10**5
        )
        hsc.ensure_schema(
            Collection("contacts"),
            [
                FieldSpec("nz_spent", "number"),
                FieldSpec("nz_cancel", "number"),
                FieldSpec("nz_last", "datetime"),
                FieldSpec("nz_consent", "bool"),
            ],
        )
        # A first round of batches warms the workers up (lazy imports, connection pools, caches) and
        # is not counted: the figure is what long-running workers sustain.
        warm = n_workers * batch
        rows = []
        for i in range(warm + events * rounds):
            row = sample(i)
            row["nz_last"] = row["nz_last"].replace("Z", "")[:10]
            rows.append(Write({k: v.strip() if isinstance(v, str) else v for k, v in row.items()}))
        all_ids = [r.id for r in hsc.upsert_many(Collection("contacts"), rows)]  # in the order of `rows`
        ids = all_ids
        logs = [tmp / f"worker{n}.log" for n in range(n_workers)]  # kept: a run that loses anything is read
        for n, log in enumerate(logs):
            spy = ["py-spy", "record", "-r", "500", "--gil", "-f", "raw", "-o", f"{profile}.worker{n}.txt", "--"]
            with log.open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        [*(spy if profile else []), sys.executable, "-m", "hub.cli", "worker"],
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=out,
                    )
                )
        wait_for(lambda: conn.scard("rq:workers") >= n_workers, timeout=60, what="workers")

        job_of: dict[str, str] = {}  # HubSpot id -> the job that carried its event (to say where a loss was)

        def enqueue(batch_ids: list[str]) -> list[str]:
            """As the intake does: one job per webhook batch, all in one round trip."""
            with conn.pipeline(transaction=False) as pipe:
                queued = []
                for k in range(0, len(batch_ids), batch):
                    chunk = batch_ids[k : k + batch]
                    evs = [{"system": "hubspot", "coll": "contacts", "id": x, "kind": "updated"} for x in chunk]
                    func = "hub.engine.intake.handle_events"
                    queued.append(jobs.push(pipe, conn, func, "hubspot", evs, queue_name=jobs.QUEUE_HIGH))
                    job_of.update((x, queued[-1]) for x in chunk)
                pipe.execute()
            return queued

        watched = [jobs.queue(conn, q) for q in jobs.QUEUES]
        # A job that failed and waits for its retry is in the scheduled registry: not done either.
        kinds = (StartedJobRegistry, ScheduledJobRegistry)
        registries = [kind(q, connection=conn).key for q in jobs.QUEUES for kind in kinds]

        def drained(own: list[str]) -> bool:
            """The round's own jobs ended, and every queue, started and scheduled registry empty
            (the follow-ups they queued are done). The polling runs on the measured cores, so it
            must cost next to nothing: one round trip for the counts, and a second for the statuses
            only once those are seen at zero; a job seen ended is not asked again (``own`` keeps
            the others)."""
            with conn.pipeline(transaction=False) as pipe:
                for q in watched:
                    pipe.llen(q.key)
                for key in registries:
                    pipe.zcard(key)
                if sum(pipe.execute()):
                    return False
                for job_id in own:
                    pipe.hget(f"rq:job:{job_id}", "status")
                statuses = pipe.execute()
            own[:] = [job_id for job_id, status in zip(own, statuses, strict=True) if status not in ENDED]
            return not own

        def wait_drained(own: list[str], timeout: float) -> tuple[float, list[int]]:
            """When all was first seen done, confirmed a moment later (a job between its queue and
            the started registry is in neither), and the machine's CPU times then."""
            deadline = time.perf_counter() + timeout
            while time.perf_counter() < deadline:
                wait_for(lambda: drained(own), timeout=timeout, interval=0.02, what="the queues to drain")
                seen, times = time.perf_counter(), _machine_times()
                time.sleep(0.2)
                if drained(own):
                    return seen, times
            raise TimeoutError("the queues did not drain")

        wait_drained(enqueue(ids[:warm]), 120)
        for q in jobs.QUEUES:
            finished = jobs.queue(conn, q).finished_job_registry
            for job_id in finished.get_job_ids():
                finished.remove(job_id)
        conn.delete("hub:runs")
        ids = ids[warm:]
        spies = []
        if profile:  # the stand-ins' profiles cover the measured part only
            for name, handle in (("hubspot", hs), ("mailchimp", mc)):
                spies.append(
                    subprocess.Popen(
                        ["py-spy", "record", "-r", "500", "--gil", "-f", "raw", "-o", f"{profile}.{name}.txt",
                         "--pid", str(handle.pid)],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )  # fmt: skip
            time.sleep(1.0)  # py-spy attaches
        # Rounds, each with contacts of its own, on the same workers: the VM's speed drifts by tens of
        # per cent from minute to minute, so one figure alone says little.
        redis_pid = redis_server.proc.pid if redis_server.proc else 0
        trips = [_round_trip(redis_server.url, redis_pid)] if redis_pid else []
        conn.config_resetstat()
        stand_ins = (hs.pid, mc.pid)
        cpu_stand_ins_start = sum(_cpu_seconds(pid) for pid in stand_ins)
        cpu_loader_start = _cpu_seconds(os.getpid())
        cpu_workers_start = sum(_cpu_seconds(p.pid) for p in procs)  # what they used so far is start-up
        cpu_redis_start = _cpu_seconds(redis_pid) if redis_pid else 0.0
        rates = []
        shares = []
        for r in range(rounds):
            before = _machine_times()
            start = time.perf_counter()
            own = enqueue(ids[r * events : (r + 1) * events])
            seen, after = wait_drained(own, 600)
            rates.append(events / (seen - start))
            shares.append(_machine_share(before, after))
        total = events * rounds
        if redis_pid:
            trips.append(_round_trip(redis_server.url, redis_pid))
        cpu_stand_ins = sum(_cpu_seconds(pid) for pid in stand_ins) - cpu_stand_ins_start
        cpu_loader = _cpu_seconds(os.getpid()) - cpu_loader_start
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        cpu_workers = sum(_cpu_seconds(p.pid) for p in procs) - cpu_workers_start
        cpu_redis = (_cpu_seconds(redis_pid) if redis_pid else 0.0) - cpu_redis_start
        failed = sum(len(jobs.queue(conn, q).failed_job_registry) for q in jobs.QUEUES)
        fired = sum(1 for e in conn.lrange("hub:runs", 0, -1) if json.loads(e).get("decision") == "fired")
        stats = conn.info("commandstats")
        per_func: dict[str, list[float]] = {}
        for q in jobs.QUEUES:
            done = jobs.queue(conn, q).finished_job_registry.get_job_ids()
            for job in Job.fetch_many(done, connection=conn, serializer=jobs.HubSerializer):
                if job is not None and job.started_at and job.ended_at:
                    spent = (job.ended_at - job.started_at).total_seconds()
                    per_func.setdefault(job.func_name.rsplit(".", 1)[-1], []).append(spent)
        mcc = MailchimpConnector(env["MAILCHIMP_API_KEY"], conn, host=mc.env["MAILCHIMP_HOST"])
        members = list(mcc.iterate(Collection(env["MAILCHIMP_LIST_ID"])))
        risk = [m.fields["merge_fields"].get("RISK") for m in members]
        have = {str(m.fields["email_address"]).lower() for m in members}
        lost_idx = [i for i, row in enumerate(rows) if row.fields["email"].lower() not in have]
        missing = [f"#{i}" for i in lost_idx]
        retried = sum(log.read_text(errors="replace").count("will retry") for log in logs)
        print(f"end to end: {rounds} rounds of {events} events in batches of {batch}, {n_workers} worker process(es):")
        print(
            f"  median {statistics.median(rates):,.0f} events/s (rounds: "
            + ", ".join(f"{x:,.0f}" for x in rates)
            + ")   (goal ≥ 2,000/s)"
        )
        print(
            f"  members in Mailchimp: {len(members)}/{warm + total} "
            f"(with a risk score: {sum(r != '' for r in risk)}); "
            f"rule firings: {fired}; failed jobs: {failed}; retries: {retried}"
        )
        if missing:
            lost.extend(missing)
            print(f"  MISSING from Mailchimp: {len(missing)} contact(s): {', '.join(missing[:5])}…")
            for line in _where_lost(conn, hsc, [rows[i] for i in lost_idx], [all_ids[i] for i in lost_idx], job_of):
                print("  " + line)
        cores = os.cpu_count() or 1
        print(
            f"  CPU: hub workers {cpu_workers:.2f} s ({cpu_workers / total * 1e3:.2f} ms/event), stand-ins "
            f"{cpu_stand_ins:.2f} s, redis {cpu_redis:.2f} s, load generator {cpu_loader:.2f} s — all on the same "
            f"{cores} cores"
        )
        print(
            "  time in jobs (wall, all workers): "
            + ", ".join(
                f"{name} {len(t)} jobs {sum(t):.2f} s"
                for name, t in sorted(per_func.items(), key=lambda kv: -sum(kv[1]))
            )
        )
        calls = sorted(((v["calls"], k.removeprefix("cmdstat_")) for k, v in stats.items()), reverse=True)
        top = ", ".join(f"{name} {n / total:.2f}" for n, name in calls[:30])
        print(f"  Redis commands per event: {sum(n for n, _ in calls) / total:.1f} ({top})")
        usec = {k.removeprefix("cmdstat_"): v["usec"] / total for k, v in stats.items()}
        inner = sorted(((u, name) for name, u in usec.items() if name not in ("evalsha", "eval")), reverse=True)
        print(
            f"  Redis CPU per event: {cpu_redis / total * 1e6:.0f} µs, of which Lua scripts "
            f"{usec.get('evalsha', 0.0) + usec.get('eval', 0.0):.0f} µs (time by command, those run inside "
            "scripts included: " + ", ".join(f"{name} {u:.0f}" for u, name in inner[:6]) + ")"
        )
        print(
            f"  the hub's own CPU per event sustains ≈ {total / cpu_workers * cores:,.0f} events/s on {cores} "
            "cores when the services run elsewhere (as the SaaS do)"
        )
        if trips:
            print(
                "  machine: one loopback round trip (a bare PING) cost "
                + " and ".join(f"{cpu:.0f} µs of CPU ({wall:.0f} µs wall)" for cpu, wall in trips)
                + " before and after the rounds"
            )
        if any(shares):
            print("  machine: the cores in each round: " + "; ".join(shares))
        completed = True
    finally:
        for p in procs:
            if profile:  # stop the worker under py-spy: py-spy then writes its file and exits
                subprocess.run(["pkill", "-TERM", "-P", str(p.pid)], check=False)
            else:
                p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:  # a worker held still by py-spy may miss its signal
                subprocess.run(["pkill", "-KILL", "-P", str(p.pid)], check=False)
                p.kill()
                p.wait(5)
        hs.stop()
        mc.stop()
        redis_server.stop()
        if completed and not lost:  # else kept, with the worker logs, for whoever reads why
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"worker logs kept in {tmp}")
    return lost


def _where_lost(
    conn: redis.Redis, hsc: HubSpotConnector, rows: list[Write], hs_ids: list[str], job_of: dict[str, str]
) -> list[str]:
    """Where contacts missing from Mailchimp stopped, told without their addresses: whether HubSpot
    still has them, whether the hub's state holds them and their Mailchimp write, and the
    results of the jobs that carried their events."""
    from rq.job import Job

    from connectors.base import Collection
    from hub import jobs
    from hub.engine.state import state_key

    found = {r.id for r in hsc.get_many(Collection("contacts"), hs_ids)}
    stages: Counter[str] = Counter()
    for row, hid in zip(rows, hs_ids, strict=True):
        names = {n.decode() for n in conn.hkeys(state_key("contact", f"email:{str(row.fields['email']).lower()}"))}
        if hid not in found:
            stage = "gone from HubSpot"
        elif not names:
            stage = "no state in the hub (never applied)"
        elif not any(n.startswith("s:mailchimp:") for n in names):
            stage = "applied, never written to Mailchimp by the hub"
        else:
            stage = "written to Mailchimp per the hub's state"
        stages[stage] += 1
    out = [f"{stage}: {n}" for stage, n in stages.items()]
    for job_id, n in Counter(job_of.get(hid, "?") for hid in hs_ids).items():
        job = Job.fetch(job_id, connection=conn, serializer=jobs.HubSerializer) if job_id != "?" else None
        result = job.latest_result() if job is not None else None
        value = result.return_value if result is not None else None
        status = job.get_status().value if job is not None else "?"
        out.append(f"job {job_id}: {n} of the missing; status {status}; result {value}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=4000)
    # Two worker processes per core, as for any I/O-bound worker: each one waits for every SaaS
    # (here stand-in) and Redis call it makes, and another can use the core meanwhile.
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100, help="events per webhook job")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds of --events each")
    parser.add_argument("--records", type=int, default=20000, help="records for the per-record figure")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument(
        "--profile",
        help="py-spy the workers and the stand-ins: PREFIX.workerN.txt, PREFIX.hubspot.txt, PREFIX.mailchimp.txt",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        cfg = Path(d)
        (cfg / "mappings").mkdir()
        (cfg / "mappings" / "contact.yaml").write_text(MAPPING)
        (cfg / "rules.yaml").write_text(RULES)
        bench_per_record(cfg, args.records)
        if not args.skip_e2e and bench_end_to_end(
            cfg, args.events, args.workers, args.batch, args.rounds, args.profile
        ):
            sys.exit("contacts were lost on the way to Mailchimp: a defect, whatever the speed")


if __name__ == "__main__":
    main()
