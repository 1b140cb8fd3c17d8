"""Fixtures for Firestore tests: Google's emulator once per session, a fresh project per test.

Import them explicitly in a test module::

    from tests.support.firestore import firestore, firestore_emulator  # noqa: F401

Without the emulator the tests skip, naming the package to install; on CI (``CI=true``) they
fail instead, so a broken CI image cannot pass silently.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from connectors.firestore import FirestoreConnector
from connectors.retry import RetryPolicy
from hub.sandbox.firestore import PACKAGE, EmulatorMissing, FirestoreEmulator, find_emulator, require_java

# Short backoffs keep fault tests quick; the attempt count stays the production default.
FAST_RETRY = RetryPolicy(base_delay=0.02, max_delay=0.2)


def emulator_launcher() -> Path:
    """The launcher, or skip (fail on CI) with the package to install."""
    try:
        launcher = find_emulator()
        require_java()
    except EmulatorMissing as exc:
        reason = f"Firestore emulator unavailable ({PACKAGE}): {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return launcher


def fresh_project() -> str:
    return f"demo-t{uuid.uuid4().hex[:12]}"


_shared: FirestoreEmulator | None = None
_users = 0


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[FirestoreEmulator]:
    """One emulator for the session; FIRESTORE_EMULATOR_HOST points at it, restored afterwards.

    Each module that imports this fixture gets its own session-scoped copy of it, so the copies
    share one process through a use count instead of starting one emulator each.
    """
    global _shared, _users
    if _shared is None:
        _shared = FirestoreEmulator(launcher=emulator_launcher()).start()
    emulator = _shared
    _users += 1
    saved = {name: os.environ.get(name) for name in ("FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")}
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host_port
    try:
        yield emulator
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _users -= 1
        if _users == 0:
            _shared = None
            emulator.stop(save=False)


@pytest.fixture
def firestore(firestore_emulator: FirestoreEmulator, redis_conn: redis.Redis) -> Iterator[FirestoreConnector]:
    """A connector on a project of its own (so tests never see each other's documents)."""
    project = fresh_project()
    connector = FirestoreConnector(
        project=project, emulator_host=firestore_emulator.host_port, conn=redis_conn, policy=FAST_RETRY
    )
    try:
        yield connector
    finally:
        connector.close()
        firestore_emulator.reset(project)
