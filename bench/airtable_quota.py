"""How close do four workers sharing Airtable's 5 requests/s/base quota get to its floor?

Starts its own redis-server on a free port and the Airtable stand-in at its real limit, then
has four worker processes upsert 2,000 records (500 each), once clean and once with 10 % of
requests failing with 500. Prints, for each run: elapsed seconds (first worker start to last
worker end), the floor (requests the stand-in received / 5 per s), their ratio and the 429s.
Goal: within 10 % of the floor, zero 429s.

    python bench/airtable_quota.py [--workers 4] [--per-worker 500] [--margin 0.05]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.airtable import AirtableConnector
from connectors.base import Collection, FieldSpec
from hub.sandbox.airtable import DEFAULT_BASE, DEFAULT_TOKEN, AirtableStandIn
from hub.sandbox.common import serve
from tests.support.airtable import LOAD_FIELDS, admin, quiet_werkzeug, run_load
from tests.support.procs import RedisServer

RATE = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--per-worker", type=int, default=500)
    parser.add_argument("--margin", type=float, default=0.05, help="the governor's spacing margin")
    args = parser.parse_args()
    quiet_werkzeug()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp)).start()
        handle = serve(AirtableStandIn())
        try:
            conn = redis.Redis.from_url(server.url)
            setup = AirtableConnector(DEFAULT_TOKEN, endpoint_url=handle.url, conn=conn)
            print(f"{'run':<12}{'records':>8}{'requests':>10}{'elapsed s':>11}{'floor s':>9}{'ratio':>7}{'429s':>6}")
            for label, error_rate in (("clean", 0.0), ("10% 500s", 0.1)):
                table = f"Load {label}"
                specs = [FieldSpec(LOAD_FIELDS[0]), FieldSpec(LOAD_FIELDS[1]), FieldSpec(LOAD_FIELDS[2], "number")]
                setup.ensure_schema(Collection(table, DEFAULT_BASE), specs)
                admin(handle, "/_sandbox/faults", {"error_rate": error_rate, "seed": 7})
                result = run_load(
                    handle.url, server.url, table, workers=args.workers, per_worker=args.per_worker, margin=args.margin
                )
                admin(handle, "/_sandbox/faults", {"error_rate": 0.0})
                floor = result["requests"] / RATE
                print(
                    f"{label:<12}{result['written']:>8}{result['requests']:>10}{result['elapsed']:>11.1f}"
                    f"{floor:>9.1f}{result['elapsed'] / floor:>7.3f}{result['rate_limited']:>6}"
                )
        finally:
            handle.stop()
            server.stop()


if __name__ == "__main__":
    main()
