"""Standard Webhooks verification (https://www.standardwebhooks.com), shared by the generic inbound
endpoint and the Firestore relay.

The sender signs ``{webhook-id}.{webhook-timestamp}.{raw body}`` with HMAC-SHA256, keyed with the
base64 part of a ``whsec_...`` secret, and sends ``v1,<base64>`` (several, space-separated, while a
secret rotates). The timestamp bounds replays; the id, unique per message and kept across retries,
is the de-duplication key. Stricter than the reference package on purpose: the timestamp must be
integer seconds (as the spec says), malformed signature entries are skipped instead of raising, and
a secret must decode strictly (a ``${VAR}`` left unresolved in the config is refused, not used as a key).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from flask import request
from werkzeug.datastructures import Headers

from webhooks.intake import Reject

ID = "webhook-id"
TIMESTAMP = "webhook-timestamp"
SIGNATURE = "webhook-signature"
PREFIX = "whsec_"
TOLERANCE = 300.0  # seconds either side of now (the spec's and the reference package's default)
MIN_KEY_BYTES = 16  # the spec asks for 24-64 random bytes; anything under 16 is not a secret
log = logging.getLogger("hub.webhooks")
_SECONDS = re.compile(r"^[0-9]{1,12}$")


class BadSecret(ValueError):
    """The configured secret is not a usable ``whsec_<base64>`` key (a configuration problem)."""


@dataclass(frozen=True)
class Verified:
    """What a valid delivery's headers say: its message id and when it was sent."""

    id: str
    timestamp: int  # epoch seconds


@functools.lru_cache(maxsize=64)
def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (the prefix is optional, as in the reference)."""
    text = secret.strip()
    if "${" in text:
        raise BadSecret("the secret is an unresolved ${...} reference: set the environment variable")
    text = text[len(PREFIX) :] if text.startswith(PREFIX) else text
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise BadSecret("the secret is not whsec_ followed by base64") from None
    if len(key) < MIN_KEY_BYTES:
        raise BadSecret(f"the secret decodes to {len(key)} bytes; use at least {MIN_KEY_BYTES} random bytes")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature a sender puts in ``webhook-signature``."""
    digest = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers_for(secret: str, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The three headers of a signed delivery (relay senders, tests, outbound use)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {ID: msg_id, TIMESTAMP: str(ts), SIGNATURE: sign(secret, msg_id, ts, body)}


def _signatures(header: str) -> list[bytes]:
    out = []
    for entry in header.split(" "):
        version, _, value = entry.partition(",")
        if version != "v1" or not value:
            continue  # another scheme (v1a: asymmetric) or garbage: not ours to check
        try:
            out.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    return out


def verify(
    secret: str,
    headers: Mapping[str, str] | Headers,
    body: bytes,
    *,
    tolerance: float = TOLERANCE,
    now: float | None = None,
) -> Verified:
    """Raise a 401 :class:`Reject` unless ``body`` carries a fresh, valid Standard Webhooks signature.

    ``headers`` may be Flask's (case-insensitive) or a plain dict. :class:`BadSecret` means the
    receiving side is misconfigured, not the sender.
    """
    key = secret_key(secret)
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signature = lowered.get(ID), lowered.get(TIMESTAMP), lowered.get(SIGNATURE)
    missing = [name for name, value in ((ID, msg_id), (TIMESTAMP, stamp), (SIGNATURE, signature)) if not value]
    if missing:
        raise Reject(401, f"missing {', '.join(missing)} header(s) (Standard Webhooks)")
    assert msg_id and stamp and signature
    if not _SECONDS.match(stamp):
        raise Reject(401, f"{TIMESTAMP} must be integer epoch seconds")
    sent = int(stamp)
    skew = (time.time() if now is None else now) - sent
    if abs(skew) > tolerance:
        side = "old" if skew > 0 else "in the future"
        raise Reject(401, f"stale {TIMESTAMP}: {abs(int(skew))} s {side} (limit {int(tolerance)} s)")
    expected = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    if not any(hmac.compare_digest(expected, given) for given in _signatures(signature)):
        raise Reject(401, f"no valid v1 signature in {SIGNATURE}")
    return Verified(msg_id, sent)


def verify_request(secret: str, raw: bytes, tolerance: float, what: str) -> Verified:
    """:func:`verify` for the current Flask request; a bad secret on our side is a 503, not a 401."""
    try:
        return verify(secret, request.headers, raw, tolerance=tolerance)
    except BadSecret as exc:
        log.error("%s cannot verify deliveries: %s", what, exc)
        raise Reject(503, f"{what} is not configured: its signing secret is unusable") from None
