"""Generic Standard Webhooks intake (``/webhooks/in/<name>``): our verification agrees with the
reference ``standardwebhooks`` package on valid and invalid vectors (and reproduces the spec's
published vector), undeclared names are 404, and a delivery becomes one inbound event, queued once
however often it is retried. Real Redis; the app served by Flask's test client.
"""

from __future__ import annotations

import base64
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from standardwebhooks import Webhook, WebhookVerificationError

from tests.webhooks.test_app import make_app, queued, write_config
from webhooks import standard
from webhooks.intake import Reject

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
OTHER = "whsec_" + base64.b64encode(os.urandom(32)).decode()
RULES = """\
webhooks:
  video_uploaded: {secret: "${VIDEO_HOOK_SECRET}"}
  quick_form: {secret: "${VIDEO_HOOK_SECRET}", tolerance: 1m}
  broken: {secret: "${NOT_SET_ANYWHERE}"}
"""


def reference_sign(secret: str, msg_id: str, ts: int, body: bytes) -> str:
    return Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, tz=UTC), body.decode())


def delivery(
    body: bytes, *, secret: str = SECRET, msg_id: str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", ts: int | None = None
) -> dict[str, str]:
    """Headers a Standard Webhooks sender puts on ``body``, signed by the reference package."""
    stamp = int(time.time()) if ts is None else ts
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": reference_sign(secret, msg_id, stamp, body),
    }


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    root = write_config(tmp_path / "config")
    (root / "rules.yaml").write_text(RULES)
    return root


@pytest.fixture
def client(redis_url: str, redis_conn: redis.Redis, config_dir: Path) -> FlaskClient:
    return make_app(redis_url, config_dir, redis_conn, VIDEO_HOOK_SECRET=SECRET).test_client()


def post(client: FlaskClient, name: str, body: bytes, headers: dict[str, str], **extra: str) -> Any:
    return client.post(
        f"/webhooks/in/{name}", data=body, headers={"Content-Type": "application/json", **headers, **extra}
    )


# -- verification against the reference package ------------------------------------------------
def test_signing_reproduces_the_spec_vector_and_the_reference() -> None:
    # The vector published with the Standard Webhooks specification (and its libraries' tests).
    spec_secret, spec_id = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek"
    spec_ts, spec_body = 1614265330, b'{"test": 2432232314}'
    ours = standard.sign(spec_secret, spec_id, spec_ts, spec_body)
    assert ours == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert ours == reference_sign(spec_secret, spec_id, spec_ts, spec_body)
    body = b'{"type": "video.uploaded"}'
    assert standard.sign(SECRET, "msg_1", 1_700_000_000, body) == reference_sign(SECRET, "msg_1", 1_700_000_000, body)
    headers = standard.headers_for(SECRET, "msg_2", body)
    assert Webhook(SECRET).verify(body, headers) == json.loads(body)


def _vector(case: str) -> tuple[str, dict[str, str], bytes]:
    """(secret the receiver holds, headers, body) for one named case."""
    body = json.dumps({"type": "video.uploaded", "data": {"client": "c-17", "video": "v-9"}}).encode()
    now = int(time.time())
    headers = delivery(body)
    if case == "valid":
        pass
    elif case == "tampered body":
        body = body.replace(b"v-9", b"v-8")
    elif case == "wrong secret":
        headers = delivery(body, secret=OTHER)
    elif case == "several signatures, one valid":
        headers["webhook-signature"] = (
            delivery(body, secret=OTHER)["webhook-signature"] + " " + headers["webhook-signature"]
        )
    elif case == "several signatures, none valid":
        wrong = delivery(body, secret=OTHER)["webhook-signature"]
        headers["webhook-signature"] = f"{wrong} {wrong.replace('v1,', 'v1,A')[:-4]}AAA="
    elif case == "only an unknown scheme":
        headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v1a,")
    elif case == "old timestamp":
        headers = delivery(body, ts=now - 6 * 60)
    elif case == "future timestamp":
        headers = delivery(body, ts=now + 6 * 60)
    elif case == "signature of another timestamp":
        headers["webhook-timestamp"] = str(now - 1)
    elif case == "signature of another id":
        headers["webhook-id"] = "msg_other"
    elif case == "secret without the whsec_ prefix":
        return SECRET.removeprefix("whsec_"), headers, body
    elif case.startswith("missing "):
        del headers[case.removeprefix("missing ")]
    else:
        raise AssertionError(case)
    return SECRET, headers, body


CASES = [
    "valid",
    "tampered body",
    "wrong secret",
    "several signatures, one valid",
    "several signatures, none valid",
    "only an unknown scheme",
    "old timestamp",
    "future timestamp",
    "signature of another timestamp",
    "signature of another id",
    "secret without the whsec_ prefix",
    "missing webhook-id",
    "missing webhook-timestamp",
    "missing webhook-signature",
]


@pytest.mark.parametrize("case", CASES)
def test_verification_agrees_with_the_reference_package(case: str) -> None:
    secret, headers, body = _vector(case)
    try:
        Webhook(secret).verify(body, headers)
        reference_ok = True
    except WebhookVerificationError:
        reference_ok = False
    try:
        verified = standard.verify(secret, headers, body)
        ours_ok = True
    except Reject as exc:
        assert exc.status == 401 and exc.message
        ours_ok = False
    assert ours_ok == reference_ok
    if ours_ok:
        assert verified.id == headers["webhook-id"] and verified.timestamp == int(headers["webhook-timestamp"])


@pytest.mark.parametrize("case", CASES)
def test_the_endpoint_accepts_exactly_what_the_reference_accepts(
    client: FlaskClient, redis_conn: redis.Redis, case: str
) -> None:
    secret, headers, body = _vector(case)
    try:
        Webhook(secret).verify(body, headers)
        expected = 200
    except WebhookVerificationError:
        expected = 401
    resp = post(client, "video_uploaded", body, headers)
    assert resp.status_code == expected, resp.get_json()
    assert len(queued(redis_conn)) == (1 if expected == 200 else 0)
    if expected == 401:
        assert list(redis_conn.scan_iter("hub:seen:*")) == []


def test_stricter_than_the_reference_where_the_spec_is() -> None:
    body = b"{}"
    ts = int(time.time())
    headers = delivery(body, ts=ts)
    # A fractional timestamp: the spec says integer seconds (the reference parses a float).
    with pytest.raises(Reject, match="integer epoch seconds"):
        standard.verify(SECRET, {**headers, "webhook-timestamp": f"{ts}.0"}, body)
    # A malformed entry next to a valid one is skipped (the reference raises ValueError on it).
    standard.verify(SECRET, {**headers, "webhook-signature": "garbage " + headers["webhook-signature"]}, body)
    for bad in ("${VIDEO_HOOK_SECRET}", "whsec_!!notbase64!!", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(standard.BadSecret):
            standard.verify(bad, headers, body)


def test_the_tolerance_is_configurable(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body = b'{"form": "contact"}'
    two_minutes_ago = delivery(body, ts=int(time.time()) - 120)
    assert post(client, "video_uploaded", body, two_minutes_ago).status_code == 200
    resp = post(client, "quick_form", body, two_minutes_ago)
    assert resp.status_code == 401 and "stale webhook-timestamp" in resp.get_json()["error"]
    assert len(queued(redis_conn)) == 1


# -- the endpoint -------------------------------------------------------------------------------
def test_an_undeclared_name_is_404(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body = b'{"a": 1}'
    resp = post(client, "not_declared", body, delivery(body))
    assert resp.status_code == 404
    assert "not_declared" in resp.get_json()["error"]
    assert queued(redis_conn) == []


def test_a_delivery_becomes_one_inbound_event(client: FlaskClient, redis_conn: redis.Redis) -> None:
    sent_at = "2025-03-01T10:15:00.250Z"
    payload = {"type": "video.uploaded", "timestamp": sent_at, "data": {"client": "c-17"}}
    body = json.dumps(payload).encode()
    resp = post(client, "video_uploaded", body, delivery(body, msg_id="msg_abc"))
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["enqueued"] == 1
    [(provider, events)] = queued(redis_conn)
    expected_ms = int(datetime.fromisoformat(sent_at).timestamp() * 1000)
    assert provider == "inbound"
    assert events == [{"name": "video_uploaded", "id": "msg_abc", "payload": payload, "at_ms": expected_ms}]


def test_without_an_event_time_the_delivery_time_is_used(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body = b'{"form": "contact", "email_hash": "x"}'
    ts = int(time.time()) - 30
    assert post(client, "video_uploaded", body, delivery(body, ts=ts)).status_code == 200
    [(_, [event])] = queued(redis_conn)
    assert event["at_ms"] == ts * 1000


def test_retries_and_duplicates_are_acknowledged_and_queued_once(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body = b'{"type": "video.uploaded", "data": {"video": "v-1"}}'
    first = post(client, "video_uploaded", body, delivery(body, msg_id="msg_1"))
    # The sender's retry: same id, re-signed later with a new timestamp.
    retry = post(client, "video_uploaded", body, delivery(body, msg_id="msg_1", ts=int(time.time()) + 2))
    again = post(client, "video_uploaded", body, delivery(body, msg_id="msg_1"))
    assert [r.status_code for r in (first, retry, again)] == [200, 200, 200]
    assert [r.get_json()["duplicates"] for r in (first, retry, again)] == [0, 1, 1]
    # Another message with the same body is another event; the same id under another name too.
    other = post(client, "video_uploaded", body, delivery(body, msg_id="msg_2"))
    other_name = post(client, "quick_form", body, delivery(body, msg_id="msg_1"))
    assert other.get_json()["enqueued"] == other_name.get_json()["enqueued"] == 1
    ids = [(ev["name"], ev["id"]) for _, events in queued(redis_conn) for ev in events]
    assert sorted(ids) == [("quick_form", "msg_1"), ("video_uploaded", "msg_1"), ("video_uploaded", "msg_2")]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        (b'{"a": ', "application/json", 400, "malformed JSON"),
        (b"[1, 2]", "application/json", 400, "JSON object"),
        (b'{"a": NaN}', "application/json", 400, "NaN"),
        (b"a=1", "application/x-www-form-urlencoded", 415, "unsupported content type"),
    ],
)
def test_bad_requests_name_the_problem_and_enqueue_nothing(
    client: FlaskClient, redis_conn: redis.Redis, body: bytes, content_type: str, status: int, words: str
) -> None:
    headers = {**delivery(body), "Content-Type": content_type}
    resp = client.post("/webhooks/in/video_uploaded", data=body, headers=headers)
    assert resp.status_code == status and words in resp.get_json()["error"]
    assert queued(redis_conn) == []


def test_a_body_over_the_limit_is_413(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body = json.dumps({"blob": "x" * (1024 * 1024)}).encode()
    resp = post(client, "video_uploaded", body, delivery(body))
    assert resp.status_code == 413
    assert queued(redis_conn) == []


def test_a_webhook_whose_secret_is_unset_is_refused_by_the_config_not_served(
    client: FlaskClient, redis_conn: redis.Redis
) -> None:
    body = b"{}"
    resp = post(client, "broken", body, delivery(body))
    assert resp.status_code == 404 and "hub check" in resp.get_json()["error"]
    assert queued(redis_conn) == []
