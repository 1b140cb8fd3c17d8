"""Fixtures for HubSpot: a fresh stand-in on a loopback port and a connector wired to it.

Import them in a test module (``from tests.support.hubspot import hubspot, hubspot_standin  # noqa``)
until tests/conftest.py registers this module.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
import requests
from hubspot import Client as HubSpotClient
from hubspot.crm.associations.v4.exceptions import ApiException as AssociationsError
from hubspot.crm.objects import (
    BatchInputSimplePublicObjectBatchInputForCreate,
    PublicObjectSearchRequest,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.objects.exceptions import ApiException as ObjectsError
from hubspot.crm.pipelines.exceptions import ApiException as PipelinesError
from hubspot.crm.properties.exceptions import ApiException as PropertiesError
from hubspot.webhooks.exceptions import ApiException as WebhooksError
from urllib3.util.retry import Retry

from connectors.hubspot import HubSpotConnector
from connectors.retry import RetryPolicy
from hub.sandbox.common import Faults, ServerHandle, serve
from hub.sandbox.hubspot import HubSpotStandIn

# Each SDK sub-package raises its own ApiException (status, reason, body, headers).
SDK_ERRORS = (ObjectsError, AssociationsError, PropertiesError, PipelinesError, WebhooksError)


@contextmanager
def running_hubspot(**options: Any) -> Iterator[ServerHandle]:
    """A HubSpot stand-in with these constructor options, served on a free loopback port."""
    handle = serve(HubSpotStandIn(**options))
    try:
        yield handle
    finally:
        handle.stop()


def sdk(handle: ServerHandle, token: str | None = None, *, api_key: str | None = None) -> HubSpotClient:
    """hubspot-api-client pointed at the stand-in (private-app token, or a developer API key)."""
    standin = handle.standin
    assert isinstance(standin, HubSpotStandIn)
    if api_key is not None:
        return HubSpotClient.create(api_key=api_key, host=handle.url, retry=Retry(0, read=False))
    return HubSpotClient.create(access_token=token or standin.tokens[0], host=handle.url, retry=Retry(0, read=False))


def error_body(exc: BaseException) -> dict[str, Any]:
    """The JSON body of an SDK ApiException."""
    body: dict[str, Any] = json.loads(getattr(exc, "body", None) or "{}")
    return body


def nested_problems(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-property problems HubSpot nests, as JSON, inside a VALIDATION_ERROR message."""
    prefix = "Property values were not valid: "
    assert body["message"].startswith(prefix), body
    problems: list[dict[str, Any]] = json.loads(body["message"][len(prefix) :])
    return problems


def create(client: HubSpotClient, otype: str, **props: Any) -> Any:
    return client.crm.objects.basic_api.create(otype, SimplePublicObjectInputForCreate(properties=props))


def batch_create(client: HubSpotClient, otype: str, rows: list[dict[str, Any]]) -> Any:
    body = BatchInputSimplePublicObjectBatchInputForCreate(inputs=[{"properties": r} for r in rows])
    return client.crm.objects.batch_api.create(otype, body)


def search(client: HubSpotClient, otype: str, *groups: list[dict[str, Any]], **extra: Any) -> Any:
    """One search: each positional argument is a filter group (a list of filters)."""
    req = PublicObjectSearchRequest(filter_groups=[{"filters": g} for g in groups], **extra)
    return client.crm.objects.search_api.do_search(otype, req)


def fast_policy() -> RetryPolicy:
    """Retries that keep tests quick but still back off (and honour Retry-After)."""
    return RetryPolicy(attempts=5, base_delay=0.02, max_delay=0.2, jitter=0.1)


def connector_for(handle: ServerHandle, conn: redis.Redis, **options: Any) -> HubSpotConnector:
    standin = handle.standin
    assert isinstance(standin, HubSpotStandIn)
    options.setdefault("policy", fast_policy())
    options.setdefault("developer_api_key", standin.developer_api_key)
    return HubSpotConnector(standin.tokens[0], conn, host=handle.url, **options)


def stats(handle: ServerHandle) -> dict[str, Any]:
    """The stand-in's request counters, read over HTTP like any client would."""
    resp = requests.get(f"{handle.url}/_sandbox/stats", timeout=5)
    resp.raise_for_status()
    data: dict[str, Any] = resp.json()
    return data


def reset(handle: ServerHandle) -> None:
    """Make a reused stand-in fresh again: empty portal, counters, rate windows and no faults."""
    standin = handle.standin
    standin.sender.wait_idle(10)
    standin.reset()
    standin.faults.update(Faults().as_dict())


def set_faults(handle: ServerHandle, **faults: Any) -> None:
    requests.post(f"{handle.url}/_sandbox/faults", json=faults, timeout=5).raise_for_status()


@pytest.fixture(scope="module")
def hubspot_shared() -> Iterator[ServerHandle]:
    """One stand-in per test module, its search limit (4/s) lifted for SDK-level tests that search
    a lot; call :func:`reset` at the start of each test."""
    with running_hubspot(search_rate=10_000) as handle:
        yield handle


@pytest.fixture
def hubspot_standin() -> Iterator[ServerHandle]:
    with running_hubspot() as handle:
        yield handle


@pytest.fixture
def hubspot(hubspot_standin: ServerHandle, redis_conn: redis.Redis) -> HubSpotConnector:
    return connector_for(hubspot_standin, redis_conn)
