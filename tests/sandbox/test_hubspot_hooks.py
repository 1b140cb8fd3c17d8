"""HubSpot stand-in webhooks (settings, subscriptions, signed batched deliveries, retries) and
fault injection, received by a tiny threaded HTTP server on loopback.

The v3 signature is checked twice: with the formula from HubSpot's docs written out here, and
with hubspot-api-client's own ``Signature.is_valid``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from hubspot.crm.objects import (
    BatchInputSimplePublicObjectBatchInputForCreate,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.utils.signature import Signature
from hubspot.webhooks import (
    SettingsChangeRequest,
    SubscriptionCreateRequest,
    SubscriptionPatchRequest,
    ThrottlingSettings,
)

from hub.sandbox.common import ServerHandle
from hub.sandbox.hubspot import HubSpotStandIn
from tests.support.hubspot import SDK_ERRORS, error_body, reset, running_hubspot, sdk, set_faults, stats


class Receiver:
    """Records every POST (path, headers, raw body); answers the queued statuses, then 200."""

    def __init__(self, statuses: tuple[int, ...] = ()) -> None:
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        self.statuses = list(statuses)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.posts.append((self.path, dict(self.headers), body))
                self.send_response(outer.statuses.pop(0) if outer.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def events(self) -> list[dict[str, Any]]:
        return [e for _, _, body in self.posts for e in json.loads(body)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def expected_v3(secret: str, uri: str, body: bytes, timestamp: str) -> str:
    """HubSpot's documented v3 formula: base64(HMAC-SHA256(secret, method + uri + body + timestamp))."""
    return base64.b64encode(
        hmac.new(secret.encode(), b"POST" + uri.encode() + body + timestamp.encode(), hashlib.sha256).digest()
    ).decode()


def assert_signed(receiver: Receiver, standin: HubSpotStandIn) -> None:
    assert receiver.posts
    for path, headers, body in receiver.posts:
        uri, stamp = receiver.base + path, headers["X-HubSpot-Request-Timestamp"]
        signature = headers["X-HubSpot-Signature-v3"]
        assert signature == expected_v3(standin.client_secret, uri, body, stamp)
        assert Signature.is_valid(
            signature, standin.client_secret, body.decode(), http_uri=uri, signature_version="v3", timestamp=stamp
        )
        assert headers["Content-Type"] == "application/json"


def flush(handle: ServerHandle) -> None:
    resp = requests.post(f"{handle.url}/_sandbox/webhooks/flush", timeout=30)
    assert resp.json()["idle"] is True


@pytest.fixture(scope="module")
def shared() -> Iterator[ServerHandle]:
    with running_hubspot() as handle:
        yield handle


@pytest.fixture
def handle(shared: ServerHandle) -> ServerHandle:
    reset(shared)
    return shared


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


def subscribe(handle: ServerHandle, target: str, *events: str) -> list[str]:
    standin = handle.standin
    assert isinstance(standin, HubSpotStandIn)
    hooks = sdk(handle, api_key=standin.developer_api_key).webhooks
    hooks.settings_api.configure(
        standin.app_id,
        SettingsChangeRequest(target_url=target, throttling=ThrottlingSettings(max_concurrent_requests=10)),
    )
    ids = []
    for event in events:
        kind, _, prop = event.partition(":")
        req = SubscriptionCreateRequest(event_type=kind, property_name=prop or None, active=True)
        ids.append(hooks.subscriptions_api.create(standin.app_id, req).id)
    return ids


def test_webhook_settings_and_subscriptions_api(handle: ServerHandle) -> None:
    standin = handle.standin
    assert isinstance(standin, HubSpotStandIn)
    [sid] = subscribe(handle, "http://127.0.0.1:9/hook", "deal.propertyChange:dealstage")
    hooks = sdk(handle, api_key=standin.developer_api_key).webhooks
    settings = hooks.settings_api.get_all(standin.app_id)
    assert settings.target_url == "http://127.0.0.1:9/hook" and settings.throttling.max_concurrent_requests == 10
    listed = hooks.subscriptions_api.get_all(standin.app_id).results
    assert [(s.id, s.event_type, s.property_name, s.active) for s in listed] == [
        (sid, "deal.propertyChange", "dealstage", True)
    ]
    paused = hooks.subscriptions_api.update(sid, standin.app_id, SubscriptionPatchRequest(active=False))
    assert paused.active is False

    with pytest.raises(SDK_ERRORS) as exc:
        hooks.subscriptions_api.create(standin.app_id, SubscriptionCreateRequest(event_type="contact.propertyChange"))
    assert exc.value.status == 400 and "propertyName is required" in error_body(exc.value)["message"]
    with pytest.raises(SDK_ERRORS) as exc:
        hooks.settings_api.get_all(standin.app_id + 1)
    assert exc.value.status == 404
    with pytest.raises(SDK_ERRORS) as exc:
        sdk(handle, api_key="not-the-key").webhooks.settings_api.get_all(standin.app_id)
    assert exc.value.status == 401 and error_body(exc.value)["category"] == "INVALID_AUTHENTICATION"


def test_signed_events_on_create_property_change_and_delete(handle: ServerHandle, receiver: Receiver) -> None:
    standin = handle.standin
    assert isinstance(standin, HubSpotStandIn)
    subs = subscribe(
        handle,
        receiver.base + "/hooks/hubspot?source=test",
        "contact.creation",
        "contact.propertyChange:firstname",
        "contact.deletion",
    )
    api = sdk(handle).crm.objects.basic_api
    made = api.create(
        "contacts", SimplePublicObjectInputForCreate(properties={"email": "w@example.com", "firstname": "Wil"})
    )
    flush(handle)
    api.update("contacts", made.id, SimplePublicObjectInput(properties={"firstname": "Will", "lastname": "X"}))
    flush(handle)
    api.archive("contacts", made.id)
    flush(handle)

    assert_signed(receiver, standin)
    assert {p for p, _, _ in receiver.posts} == {"/hooks/hubspot?source=test"}
    events = receiver.events()
    got = [(e["subscriptionType"], e.get("propertyName"), e.get("propertyValue")) for e in events]
    assert got == [
        ("contact.creation", None, None),
        ("contact.propertyChange", "firstname", "Wil"),
        ("contact.propertyChange", "firstname", "Will"),
        ("contact.deletion", None, None),
    ]
    for e in events:
        assert (e["objectId"], e["portalId"], e["appId"]) == (int(made.id), standin.portal_id, standin.app_id)
        assert e["attemptNumber"] == 0 and e["changeSource"] == "API" and isinstance(e["occurredAt"], int)
        assert str(e["subscriptionId"]) in subs
    assert len({e["eventId"] for e in events}) == 4


def test_events_are_grouped_at_most_100_to_a_request(receiver: Receiver) -> None:
    with running_hubspot(webhook_window=1.0) as handle:
        subscribe(handle, receiver.base + "/h", "company.creation", "company.propertyChange:name")
        body = BatchInputSimplePublicObjectBatchInputForCreate(
            inputs=[{"properties": {"name": f"C{i}"}} for i in range(100)]
        )
        sdk(handle).crm.objects.batch_api.create("companies", body)
        flush(handle)
        sizes = [len(json.loads(b)) for _, _, b in receiver.posts]
        assert sizes == [100, 100]  # 200 events of one window: two requests of the maximum 100
        assert len({e["eventId"] for e in receiver.events()}) == 200


def test_failing_receiver_gets_retries_with_attempt_number_bumped(handle: ServerHandle) -> None:
    standin = handle.standin
    assert isinstance(standin, HubSpotStandIn)
    failing = Receiver(statuses=(500, 503))
    try:
        subscribe(handle, failing.base + "/h", "ticket.creation")
        sdk(handle).crm.objects.basic_api.create(
            "tickets", SimplePublicObjectInputForCreate(properties={"subject": "S", "hs_pipeline_stage": "1"})
        )
        flush(handle)
        batches = [json.loads(b) for _, _, b in failing.posts]
        assert [[e["attemptNumber"] for e in b] for b in batches] == [[0], [1], [2]]
        assert len({b[0]["eventId"] for b in batches}) == 1
        assert len({h["X-HubSpot-Request-Timestamp"] + h["X-HubSpot-Signature-v3"] for _, h, _ in failing.posts}) == 3
        assert_signed(failing, standin)
        assert stats(handle)["webhooks"] == {"status_500": 1, "status_503": 1, "delivered": 1}
    finally:
        failing.close()


def test_duplicate_fault_delivers_the_same_events_twice(handle: ServerHandle, receiver: Receiver) -> None:
    subscribe(handle, receiver.base + "/h", "deal.creation")
    set_faults(handle, webhook_duplicate_rate=1.0, seed=7)
    sdk(handle).crm.objects.basic_api.create("deals", SimplePublicObjectInputForCreate(properties={"dealname": "D"}))
    flush(handle)
    assert [e["eventId"] for e in receiver.events()] == [1, 1]
    assert_signed(receiver, handle.standin)  # type: ignore[arg-type]


def test_reorder_fault_swaps_deliveries(receiver: Receiver) -> None:
    with running_hubspot(webhook_window=0.0) as handle:  # no grouping: one delivery per event
        subscribe(handle, receiver.base + "/h", "deal.creation")
        set_faults(handle, webhook_reorder_rate=1.0, seed=1)
        body = BatchInputSimplePublicObjectBatchInputForCreate(
            inputs=[{"properties": {"dealname": n}} for n in ("first", "second")]
        )
        sdk(handle).crm.objects.batch_api.create("deals", body)
        flush(handle)
        assert [e["eventId"] for e in receiver.events()] == [2, 1]
        assert stats(handle)["webhooks"]["reordered"] == 1


def test_ui_edits_are_announced_with_crm_ui_source(handle: ServerHandle, receiver: Receiver) -> None:
    subscribe(handle, receiver.base + "/h", "deal.propertyChange:dealstage")
    made = requests.post(
        f"{handle.url}/_sandbox/hubspot/objects/deals",
        json={"properties": {"dealname": "Won?", "dealstage": "appointmentscheduled"}},
        timeout=5,
    )
    assert made.status_code == 201
    moved = requests.patch(
        f"{handle.url}/_sandbox/hubspot/objects/deals/{made.json()['id']}",
        json={"properties": {"dealstage": "closedwon"}},
        timeout=5,
    )
    assert moved.status_code == 200
    flush(handle)
    assert [(e["propertyValue"], e["changeSource"]) for e in receiver.events()] == [
        ("appointmentscheduled", "CRM_UI"),
        ("closedwon", "CRM_UI"),
    ]
    bad = requests.patch(
        f"{handle.url}/_sandbox/hubspot/objects/deals/{made.json()['id']}",
        json={"properties": {"dealstage": "nowhere"}},
        timeout=5,
    )
    assert bad.status_code == 400


def test_injected_errors_use_hubspots_shape_and_spare_admin_routes(handle: ServerHandle) -> None:
    set_faults(handle, error_rate=1.0, error_statuses=[503])
    with pytest.raises(SDK_ERRORS) as exc:
        sdk(handle).crm.objects.basic_api.get_page("contacts")
    assert exc.value.status == 503 and set(error_body(exc.value)) >= {"status", "message", "correlationId"}
    assert stats(handle)["statuses"] == {"503": 1}  # admin routes answered despite the fault
    set_faults(handle, error_rate=0.0)
    assert sdk(handle).crm.objects.basic_api.get_page("contacts").results == []


def test_injected_429_looks_like_hubspots(handle: ServerHandle) -> None:
    set_faults(handle, error_rate=1.0, error_statuses=[429])
    with pytest.raises(SDK_ERRORS) as exc:
        sdk(handle).crm.objects.basic_api.get_page("contacts")
    assert exc.value.status == 429 and error_body(exc.value)["policyName"] == "TEN_SECONDLY_ROLLING"
