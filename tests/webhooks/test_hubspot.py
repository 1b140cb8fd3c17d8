"""HubSpot intake: signature v3 vectors computed by HubSpot's formula (and checked against
hubspot-api-client's own validator), the batch → source events mapping, and contacts changed in
the HubSpot stand-in arriving through its real, signed webhook sender at the app served on a
loopback port — exactly one normalised event per change, also under duplicate and reorder faults.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from hubspot.crm.objects import SimplePublicObjectInput, SimplePublicObjectInputForCreate
from hubspot.utils.signature import Signature

from hub.runtime import Runtime
from hub.sandbox.common import ServerHandle
from hub.sandbox.hubspot import HubSpotStandIn, exports
from hub.settings import Settings
from tests.support.hubspot import connector_for, running_hubspot, sdk, set_faults
from tests.support.procs import wait_for
from tests.webhooks.test_app import (
    HOST,
    SECRET,
    hs_event,
    make_app,
    post_hubspot,
    queued,
    served,
    signed_headers,
    v3,
    write_config,
)
from webhooks.hubspot import parse_events, setup, sign_v3

PATH = "/webhooks/hubspot"


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    return write_config(tmp_path / "config")


@pytest.fixture
def client(redis_url: str, redis_conn: redis.Redis, config_dir: Path) -> FlaskClient:
    return make_app(redis_url, config_dir, redis_conn).test_client()


# -- signature v3 -------------------------------------------------------------------------------
def test_sign_v3_agrees_with_the_sdk_validator() -> None:
    body = json.dumps([hs_event(1, 7)])
    stamp = str(int(time.time() * 1000))
    uri = "https://hub.example.com/webhooks/hubspot?portal=62515"
    ours = sign_v3(SECRET, "POST", uri, body.encode(), stamp)
    assert ours == v3(SECRET, "POST", uri, body.encode(), stamp)
    assert Signature.is_valid(ours, SECRET, body, http_uri=uri, signature_version="v3", timestamp=stamp)


def test_a_valid_signature_is_accepted(client: FlaskClient, redis_conn: redis.Redis) -> None:
    resp = post_hubspot(client, [hs_event(1, 7)])
    assert resp.status_code == 200, resp.get_json()
    assert len(queued(redis_conn)) == 1


def _post(client: FlaskClient, path: str, body: bytes, headers: dict[str, str]) -> Any:
    return client.post(path, data=body, headers=headers)


@pytest.mark.parametrize("case", ["tampered body", "wrong secret", "query string changed", "old timestamp",
                                  "future timestamp", "signature of another timestamp", "v1 only", "no timestamp",
                                  "timestamp not a number"])  # fmt: skip
def test_bad_signatures_are_401_and_enqueue_nothing(client: FlaskClient, redis_conn: redis.Redis, case: str) -> None:
    body = json.dumps([hs_event(1, 7)]).encode()
    path = f"{PATH}?portal=62515"
    now = int(time.time() * 1000)
    headers = signed_headers(HOST + path, body)
    send = body
    if case == "tampered body":
        send = body.replace(b'"objectId": 7', b'"objectId": 8')
        assert send != body
    elif case == "wrong secret":
        headers = signed_headers(HOST + path, body, secret="not-the-secret")
    elif case == "query string changed":
        path = f"{PATH}?portal=62516"
    elif case == "old timestamp":  # a captured request replayed 6 minutes later, correctly signed then
        headers = signed_headers(HOST + path, body, stamp_ms=now - 6 * 60 * 1000)
    elif case == "future timestamp":
        headers = signed_headers(HOST + path, body, stamp_ms=now + 6 * 60 * 1000)
    elif case == "signature of another timestamp":
        headers["X-HubSpot-Request-Timestamp"] = str(now + 1)
    elif case == "v1 only":
        headers = {"Content-Type": "application/json", "X-HubSpot-Signature-Version": "v1",
                   "X-HubSpot-Signature": v3(SECRET, "", "", body, "")}  # fmt: skip
    elif case == "no timestamp":
        del headers["X-HubSpot-Request-Timestamp"]
    elif case == "timestamp not a number":
        headers["X-HubSpot-Request-Timestamp"] = "yesterday"
    resp = _post(client, path, send, headers)
    assert resp.status_code == 401, resp.get_json()
    message = resp.get_json()["error"]
    assert "X-HubSpot" in message
    if case == "v1 only":
        assert "missing X-HubSpot-Signature-v3" in message
    if case in ("old timestamp", "future timestamp"):
        assert "stale" in message
    assert queued(redis_conn) == []
    assert list(redis_conn.scan_iter("hub:seen:*")) == []


def test_the_query_string_is_part_of_the_signed_uri(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body = json.dumps([hs_event(1, 7)]).encode()
    path = f"{PATH}?portal=62515&env=prod"
    assert _post(client, path, body, signed_headers(HOST + path, body)).status_code == 200
    unsigned_query = signed_headers(HOST + PATH, body)  # signed without the query it is sent with
    assert _post(client, path, body, unsigned_query).status_code == 401


def test_url_encoded_characters_are_decoded_as_hubspot_signs(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body = json.dumps([hs_event(1, 7)]).encode()
    path = f"{PATH}?since=2024-01-01T00%3A00%3A00"
    headers = signed_headers(HOST + f"{PATH}?since=2024-01-01T00:00:00", body)
    assert _post(client, path, body, headers).status_code == 200


def test_behind_a_proxy_the_public_url_is_what_was_signed(
    redis_url: str, redis_conn: redis.Redis, config_dir: Path
) -> None:
    body = json.dumps([hs_event(1, 7)]).encode()
    public = "https://hub.example.com/crm"  # the proxy strips /crm and speaks http to the app
    headers = signed_headers(public + PATH, body)
    behind = make_app(redis_url, config_dir, redis_conn, HUB_PUBLIC_URL=public + "/").test_client()
    assert _post(behind, PATH, body, headers).status_code == 200
    direct = make_app(redis_url, config_dir, redis_conn).test_client()
    assert _post(direct, PATH, body, headers).status_code == 401


# -- events -------------------------------------------------------------------------------------
def test_event_kinds_and_fields() -> None:
    batch = [
        hs_event(1, 10, "creation"),
        hs_event(2, 11, "propertyChange", propertyName="firstname", propertyValue="Ann"),
        hs_event(3, 12, "deletion"),
        hs_event(4, 13, "privacyDeletion"),
        hs_event(5, 14, "restore"),
        {**hs_event(6, 20), "subscriptionType": "object.propertyChange", "objectTypeId": "0-3",
         "propertyName": "amount"},
        {**hs_event(7, 21), "subscriptionType": "object.creation", "objectTypeId": "2-4711"},
        {**hs_event(8, 0), "subscriptionType": "company.merge", "primaryObjectId": 30, "mergedObjectIds": [30, 31]},
    ]  # fmt: skip
    events, keys, ignored = parse_events(batch)
    got = [(e["coll"], e["id"], e["kind"], e["fields"]) for e in events]
    assert got == [
        ("contacts", "10", "created", []),
        ("contacts", "11", "updated", ["firstname"]),
        ("contacts", "12", "deleted", []),
        ("contacts", "13", "deleted", []),
        ("contacts", "14", "unknown", []),
        ("deals", "20", "updated", ["amount"]),
        ("2-4711", "21", "created", []),
        ("companies", "30", "updated", []),
        ("companies", "31", "deleted", []),
    ]
    assert all(e["system"] == "hubspot" and e["base"] == "" for e in events)
    assert events[0]["at_ms"] == batch[0]["occurredAt"]
    assert len(set(keys)) == len(keys) and ignored == 0


def test_events_about_one_record_fold_into_one_whatever_their_order() -> None:
    at = 1_700_000_000_000
    batch = [
        hs_event(3, 10, "propertyChange", propertyName="lastname", occurredAt=at),
        hs_event(1, 10, "creation", occurredAt=at),
        hs_event(2, 10, "propertyChange", propertyName="email", occurredAt=at),
    ]
    (event,), (key,), _ = parse_events(batch)
    assert (event["kind"], event["fields"], event["at_ms"]) == ("created", ["email", "lastname"], at)
    assert parse_events(list(reversed(batch)))[1] == [key]  # same events, any order: same key
    later_delete = [hs_event(1, 10, "creation", occurredAt=at), hs_event(9, 10, "deletion", occurredAt=at + 5)]
    assert parse_events(later_delete)[0][0]["kind"] == "deleted"
    assert parse_events(list(reversed(later_delete)))[0][0]["kind"] == "deleted"


def test_event_ids_repeat_across_subscriptions_and_the_key_tells_them_apart() -> None:
    a = hs_event(1, 10, "propertyChange", propertyName="email", subscriptionId=11)
    b = hs_event(1, 10, "propertyChange", propertyName="email", subscriptionId=12)
    assert parse_events([a])[1] != parse_events([b])[1]
    retry = dict(a, attemptNumber=3)
    assert parse_events([a])[1] == parse_events([retry])[1]


def test_types_the_hub_does_not_sync_are_acknowledged(client: FlaskClient, redis_conn: redis.Redis) -> None:
    batch = [{**hs_event(1, 10), "subscriptionType": "conversation.creation"}]
    resp = post_hubspot(client, batch)
    assert resp.status_code == 200 and resp.get_json()["enqueued"] == 0
    assert queued(redis_conn) == []


# -- through the stand-in's webhook sender ------------------------------------------------------
@pytest.fixture
def standin_env(hubspot_standin: ServerHandle, redis_url: str, redis_conn: redis.Redis,
                config_dir: Path) -> Iterator[tuple[ServerHandle, Flask, Runtime]]:  # fmt: skip
    standin = hubspot_standin.standin
    assert isinstance(standin, HubSpotStandIn)
    env = {**exports(hubspot_standin.url, standin), "REDIS_URL": redis_url}
    rt = Runtime(Settings(env=env), config_dir=config_dir, conn=redis_conn)
    rt.use_connector("hubspot", connector_for(hubspot_standin, redis_conn))
    hub_app = make_app(redis_url, config_dir, redis_conn, HUBSPOT_CLIENT_SECRET=standin.client_secret)
    yield hubspot_standin, hub_app, rt


def _drain(handle: ServerHandle) -> None:
    standin = handle.standin
    assert standin.sender.wait_idle(15), "the stand-in's webhook deliveries did not finish"


def _events(conn: redis.Redis) -> list[dict[str, Any]]:
    return [e for _, evs in queued(conn) for e in evs]


def test_setup_subscribes_every_mapped_object_idempotently(standin_env: Any) -> None:
    handle, _, rt = standin_env
    report = setup(rt, "https://hub.example.com/")
    assert report["target"] == "https://hub.example.com/webhooks/hubspot"
    subs = report["objects"]["contacts"]["subscriptions"]
    assert set(subs) == {"contact.creation", "contact.deletion", "contact.propertyChange:email",
                         "contact.propertyChange:firstname"}  # fmt: skip
    assert setup(rt, "https://hub.example.com") == report
    hooks = sdk(handle, api_key=handle.standin.developer_api_key).webhooks
    assert hooks.settings_api.get_all(handle.standin.app_id).target_url == report["target"]
    assert len(hooks.subscriptions_api.get_all(handle.standin.app_id).results) == 4


def test_contact_changes_arrive_as_one_event_each(standin_env: Any, redis_conn: redis.Redis) -> None:
    handle, hub_app, rt = standin_env
    with served(hub_app) as base:
        setup(rt, base)
        api = sdk(handle).crm.objects.basic_api
        made = api.create("contacts", SimplePublicObjectInputForCreate(properties={"email": "ann@example.com",
                                                                                   "firstname": "Ann"}))  # fmt: skip
        _drain(handle)
        wait_for(lambda: len(_events(redis_conn)) == 1, what="the creation event")
        api.update("contacts", made.id, SimplePublicObjectInput(properties={"firstname": "Anne"}))
        _drain(handle)
        wait_for(lambda: len(_events(redis_conn)) == 2, what="the update event")
        api.archive("contacts", made.id)
        _drain(handle)
        wait_for(lambda: len(_events(redis_conn)) == 3, what="the deletion event")
    got = [(e["coll"], e["id"], e["kind"], e["fields"]) for e in _events(redis_conn)]
    # The creation came as one delivery of three HubSpot events (creation, email, firstname).
    assert got == [
        ("contacts", made.id, "created", ["email", "firstname"]),
        ("contacts", made.id, "updated", ["firstname"]),
        ("contacts", made.id, "deleted", []),
    ]
    assert len(queued(redis_conn)) == 3  # one job per delivery


def test_duplicated_and_reordered_deliveries_still_give_one_event_per_change(
    redis_url: str, redis_conn: redis.Redis, config_dir: Path
) -> None:
    # A zero batching window makes every change its own delivery, so deliveries can swap.
    with running_hubspot(webhook_window=0.0) as handle:
        standin = handle.standin
        assert isinstance(standin, HubSpotStandIn)
        hub_app = make_app(redis_url, config_dir, redis_conn, HUBSPOT_CLIENT_SECRET=standin.client_secret)
        with served(hub_app) as base:
            hubspot = connector_for(handle, redis_conn)
            events = ["contact.creation", "contact.propertyChange:firstname", "contact.deletion"]
            hubspot.subscribe(standin.app_id, base + PATH, events)
            set_faults(handle, webhook_duplicate_rate=1.0, webhook_reorder_rate=0.5, seed=5)
            api = sdk(handle).crm.objects.basic_api
            people = [SimplePublicObjectInputForCreate(properties={"email": f"p{i}@example.com"}) for i in range(4)]
            ids = [api.create("contacts", person).id for person in people]
            for oid in ids:
                api.update("contacts", oid, SimplePublicObjectInput(properties={"firstname": "Renamed"}))
            for oid in ids:
                api.archive("contacts", oid)
            _drain(handle)
            wait_for(lambda: len(_events(redis_conn)) >= 12, what="twelve events")
            _drain(handle)
            stats = standin.stats.snapshot()["webhooks"]
    got = Counter((e["id"], e["kind"]) for e in _events(redis_conn))
    assert got == Counter({(oid, kind): 1 for oid in ids for kind in ("created", "updated", "deleted")})
    assert stats["duplicated"] >= 6 and stats.get("reordered", 0) >= 1  # the faults did happen
