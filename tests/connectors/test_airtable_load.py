"""Four worker processes share Airtable's 5 requests/s/base quota through Redis: 2,000 upserts
reach the stand-in (running at the real limit and penalty) without a single 429, nothing lost
and nothing duplicated — also when 10 % of requests fail with a 500. The speed figure (how
close to the quota's floor) is printed by ``bench/airtable_quota.py``, not asserted here."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import redis

from connectors.airtable import AirtableConnector
from connectors.base import Collection, FieldSpec
from hub.sandbox.airtable import DEFAULT_BASE, DEFAULT_TOKEN, AirtableStandIn
from hub.sandbox.common import ServerHandle, serve
from tests.support.airtable import LOAD_FIELDS, admin, run_load

WORKERS, PER_WORKER = 4, 500


@pytest.fixture
def real_standin() -> Iterator[ServerHandle]:
    """Airtable's real limit: 5 requests/s per base, then 30 s of 429s."""
    handle = serve(AirtableStandIn())
    yield handle
    handle.stop()


@pytest.mark.parametrize("error_rate", [0.0, 0.1], ids=["clean", "10pct-500s"])
def test_four_workers_stay_under_the_quota(real_standin: ServerHandle, redis_url: str, error_rate: float) -> None:
    table = f"Load {error_rate}"
    setup = AirtableConnector(DEFAULT_TOKEN, endpoint_url=real_standin.url, conn=redis.Redis.from_url(redis_url))
    specs = [FieldSpec(LOAD_FIELDS[0]), FieldSpec(LOAD_FIELDS[1]), FieldSpec(LOAD_FIELDS[2], "number")]
    setup.ensure_schema(Collection(table, DEFAULT_BASE), specs)
    admin(real_standin, "/_sandbox/faults", {"error_rate": error_rate, "seed": 11})
    result = run_load(real_standin.url, redis_url, table, workers=WORKERS, per_worker=PER_WORKER)
    admin(real_standin, "/_sandbox/faults", {"error_rate": 0.0})

    assert result["rate_limited"] == 0, result["statuses"]
    assert result["written"] == WORKERS * PER_WORKER
    if error_rate:
        assert int(result["statuses"].get("500", 0)) > 0  # the faults really happened
    keys = Counter(r.fields["Key"] for r in setup.iterate(Collection(table, DEFAULT_BASE)))  # governed too
    assert set(keys) == {f"k{i:05d}" for i in range(WORKERS * PER_WORKER)}  # nothing lost
    assert set(keys.values()) == {1}  # nothing duplicated
