"""What every webhook endpoint shares, seen through the HubSpot endpoint and the app: unknown
routes, body limits, content types, health checks, Redis outages, duplicate deliveries and
requests accepted while no worker runs. Real Redis; signatures computed by HubSpot's formula.

The helpers here (config, app, signing, a served app) are reused by the provider test modules.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from hub import jobs
from hub.app import create_app
from hub.settings import Settings
from tests.support.procs import free_port
from webhooks.intake import seen_buckets

SECRET = "test-client-secret-0f9e"
MC_SECRET = "mc-hook-secret-5b7c1d"
HOST = "http://localhost"  # what Flask's test client calls
MAPPING = """\
entity: person
identity: [email]
fields:
  email: {type: email, required: true}
  first_name: string
systems:
  hubspot:
    object: contacts
    fields: {email: email, first_name: firstname}
  mailchimp:
    list: LIST_ID
    fields: {email: email_address, first_name: merge_fields.FNAME}
"""


def write_config(root: Path, list_id: str = "list0001") -> Path:
    """A config directory mapping one entity to HubSpot contacts and a Mailchimp list."""
    (root / "mappings").mkdir(parents=True, exist_ok=True)
    (root / "mappings" / "person.yaml").write_text(MAPPING.replace("LIST_ID", list_id))
    return root


def make_app(redis_url: str, config_dir: Path, conn: redis.Redis | None = None, **env: str) -> Flask:
    base = {"REDIS_URL": redis_url, "HUBSPOT_CLIENT_SECRET": SECRET, "MAILCHIMP_WEBHOOK_SECRET": MC_SECRET}
    settings = Settings(env={**base, **env})
    return create_app(settings, config_dir=config_dir, conn=conn or redis.Redis.from_url(redis_url))


def v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """HubSpot's documented formula: base64(HMAC-SHA256(secret, method + uri + body + timestamp))."""
    message = method.encode() + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def signed_headers(uri: str, body: bytes, *, secret: str = SECRET, stamp_ms: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time() * 1000) if stamp_ms is None else stamp_ms)
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": v3(secret, "POST", uri, body, stamp),
        "X-HubSpot-Request-Timestamp": stamp,
    }


def hs_event(event_id: int, object_id: int | str, kind: str = "creation", **extra: Any) -> dict[str, Any]:
    event = {
        "eventId": event_id,
        "subscriptionId": 11,
        "portalId": 62515,
        "appId": 54321,
        "occurredAt": 1_700_000_000_000 + event_id,
        "subscriptionType": f"contact.{kind}",
        "attemptNumber": 0,
        "objectId": object_id,
        "changeSource": "CRM_UI",
    }
    event.update(extra)
    return event


def post_hubspot(client: FlaskClient, events: Any, *, path: str = "/webhooks/hubspot", **sign: Any) -> Any:
    body = events if isinstance(events, bytes) else json.dumps(events).encode()
    return client.post(path, data=body, headers=signed_headers(HOST + path, body, **sign))


def queued(conn: redis.Redis) -> list[tuple[str, list[dict[str, Any]]]]:
    """(provider, events) of every job waiting in the intake queue."""
    return [tuple(job.args) for job in jobs.queue(conn, jobs.QUEUE_HIGH).jobs]  # type: ignore[misc]


@contextmanager
def served(app: Flask, port: int = 0) -> Iterator[str]:
    """Serve ``app`` on a loopback port (0: a free one) from a thread; yields its base URL."""
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    return write_config(tmp_path / "config")


@pytest.fixture
def app(redis_url: str, redis_conn: redis.Redis, config_dir: Path) -> Flask:
    return make_app(redis_url, config_dir, redis_conn)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# -- routes and health --------------------------------------------------------------------------
def test_unknown_route_is_a_json_404(client: FlaskClient, redis_conn: redis.Redis) -> None:
    resp = client.post("/webhooks/nope", data=b"[]", headers={"Content-Type": "application/json"})
    assert resp.status_code == 404 and resp.get_json()["error"] == "no such endpoint"
    assert client.get("/webhooks/hubspot").status_code == 405
    assert queued(redis_conn) == []


def test_healthz_answers_without_redis(config_dir: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    client = make_app(dead, config_dir).test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_readyz_follows_redis(config_dir: Path, client: FlaskClient) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["status"] == "ready"
    dead = make_app(f"redis://127.0.0.1:{free_port()}/0", config_dir).test_client()
    down = dead.get("/readyz")
    assert down.status_code == 503
    assert any("redis unreachable" in p for p in down.get_json()["problems"])


# -- the shared checks, before anything is enqueued ---------------------------------------------
def test_body_over_one_mebibyte_is_413(client: FlaskClient, redis_conn: redis.Redis) -> None:
    big = json.dumps([hs_event(1, 1, padding="x" * (1024 * 1024))]).encode()
    resp = post_hubspot(client, big)
    assert resp.status_code == 413 and "limit" in resp.get_json()["error"]
    assert queued(redis_conn) == []


def test_wrong_content_type_is_415(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body = json.dumps([hs_event(1, 1)]).encode()
    headers = signed_headers(HOST + "/webhooks/hubspot", body)
    headers["Content-Type"] = "text/plain"
    resp = client.post("/webhooks/hubspot", data=body, headers=headers)
    assert resp.status_code == 415 and "application/json" in resp.get_json()["error"]
    assert queued(redis_conn) == []


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (b"[{not json", "malformed JSON"),
        (b'{"eventId": 1}', "JSON array"),
        (b"[1]", "event 0: expected an object"),
        (json.dumps([hs_event(1, 1), {"subscriptionType": "contact.creation", "occurredAt": 5}]).encode(), "event 1"),
        (json.dumps([hs_event(1, "abc")]).encode(), "objectId must be an integer"),
    ],
)
def test_malformed_payload_is_400_naming_the_problem(
    client: FlaskClient, redis_conn: redis.Redis, payload: bytes, says: str
) -> None:
    resp = post_hubspot(client, payload)
    assert resp.status_code == 400 and says in resp.get_json()["error"]
    assert queued(redis_conn) == []


def test_redis_outage_is_503_so_the_provider_retries(config_dir: Path) -> None:
    client = make_app(f"redis://127.0.0.1:{free_port()}/0", config_dir).test_client()
    resp = post_hubspot(client, [hs_event(1, 1)])
    assert resp.status_code == 503 and "retry" in resp.get_json()["error"]


def test_unconfigured_secret_refuses_everything(redis_url: str, redis_conn: redis.Redis, config_dir: Path) -> None:
    client = make_app(redis_url, config_dir, redis_conn, HUBSPOT_CLIENT_SECRET="").test_client()
    resp = post_hubspot(client, [hs_event(1, 1)])
    assert resp.status_code == 503 and "HUBSPOT_CLIENT_SECRET" in resp.get_json()["error"]
    assert queued(redis_conn) == []


# -- accepted: one job per request, duplicates once, no worker needed ---------------------------
def test_accepted_while_no_worker_runs(client: FlaskClient, redis_conn: redis.Redis) -> None:
    batch = [hs_event(1, 101), hs_event(2, 102), hs_event(3, 103, "deletion")]
    resp = post_hubspot(client, batch)
    assert resp.status_code == 200
    answer = resp.get_json()
    assert (answer["received"], answer["enqueued"], answer["duplicates"]) == (3, 3, 0)
    (job,) = jobs.queue(redis_conn, jobs.QUEUE_HIGH).jobs
    assert job.id == answer["job"] and job.get_status() == "queued"
    assert job.func_name == "hub.engine.intake.handle_events"
    provider, events = job.args
    assert provider == "hubspot"
    assert [(e["id"], e["kind"]) for e in events] == [("101", "created"), ("102", "created"), ("103", "deleted")]


def test_a_redelivered_batch_is_acknowledged_and_enqueued_once(client: FlaskClient, redis_conn: redis.Redis) -> None:
    batch = [hs_event(1, 101), hs_event(2, 102)]
    first = post_hubspot(client, batch)
    # HubSpot's retry: same events, attemptNumber bumped, signed again with a new timestamp.
    retry = [dict(e, attemptNumber=1) for e in batch]
    again = post_hubspot(client, retry, stamp_ms=int(time.time() * 1000) + 1000)
    assert first.status_code == again.status_code == 200
    assert again.get_json()["duplicates"] == 2 and again.get_json()["enqueued"] == 0
    assert len(queued(redis_conn)) == 1
    third = post_hubspot(client, [hs_event(1, 101), hs_event(3, 103)])  # one old, one new
    assert (third.get_json()["enqueued"], third.get_json()["duplicates"]) == (1, 1)
    assert [[e["id"] for e in evs] for _, evs in queued(redis_conn)] == [["101", "102"], ["103"]]


def test_dedupe_keys_are_kept_longer_than_hubspot_retries(client: FlaskClient, redis_conn: redis.Redis) -> None:
    post_hubspot(client, [hs_event(1, 101)])
    current, previous = seen_buckets()
    assert redis_conn.scard(current) == 1 and redis_conn.ttl(current) > 4 * 86400
    # HubSpot retries for 24 h: a key seen in the previous two-day period still counts.
    redis_conn.rename(current, previous)
    again = post_hubspot(client, [dict(hs_event(1, 101), attemptNumber=5)])
    assert again.get_json()["duplicates"] == 1 and len(queued(redis_conn)) == 1
    redis_conn.delete(previous)  # beyond the window: the same event is new again
    assert post_hubspot(client, [hs_event(1, 101)]).get_json()["enqueued"] == 1
