"""The action context of a real firing: actions act through the connectors and the sync state.

Field writes go through the same path as synced changes (agreed state first, then propagation
jobs), so a rule that sets a field never fights the sync, and its write is not echoed back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from datetime import datetime
from typing import Any

import requests

from connectors.base import Collection, FieldSpec, Write
from hub import clock
from hub.config.mapping import Mapping
from hub.engine.entities import collection, record_key
from hub.engine.once import done_key
from hub.engine.state import RecordState
from hub.engine.sync import drain, hub_call, outbox_name, tracked_fields
from hub.errors import ConfigError, PermanentError, TransientError
from hub.mapping.translate import from_system, normalize, to_system
from hub.mapping.values import to_json
from hub.runtime import Runtime

log = logging.getLogger("hub.actions")
DELIVERIES = "hub:deliveries"
ACTION_KEY_PROPERTY = FieldSpec("hub_action_key", "string", label="Hub action key", unique=True)
HTTP_TIMEOUT = 10


def sign_standard_webhook(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` over ``id.timestamp.body`` (Standard Webhooks)."""
    raw = secret.removeprefix("whsec_")
    key = base64.b64decode(raw)
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class LiveContext:
    def __init__(
        self,
        rt: Runtime,
        *,
        rule_id: str,
        entity: str | None,
        record: dict[str, Any] | None,
        event: dict[str, Any],
        key: str,
        record_key: str | None,
        outbox: str | None = None,
        one_write: bool = False,
        defer: list[dict[str, Any]] | None = None,
    ) -> None:
        self.outbox = outbox  # a job's outbox, drained by the job; None: drain each write here
        # The action is one write of the record state (not `external`): that write carries its done
        # marker, so it happens once; a second write would not be covered, so it is refused.
        self.one_write = one_write
        # With a job's outbox, that one write may be queued here instead of made: the caller applies
        # the queued writes together (one round trip), before any external action runs.
        self.defer = defer if one_write and outbox else None
        self.written = False
        self.rt = rt
        self.rule_id = rule_id
        self.entity = entity
        self.record = record
        self.event = event
        self.key = key
        self.record_key = record_key

    # -- helpers --------------------------------------------------------------------------------
    def now(self) -> datetime:
        return clock.now()

    def _mapping(self, entity: str | None = None) -> Mapping:
        name = entity or self.entity
        if name is None:
            raise ConfigError(f"rule {self.rule_id!r}: this action needs a record, and the trigger has none")
        return self.rt.config.mapping(name)

    def _write(self, entity: str, key: str, values: dict[str, Any], kind: str) -> dict[str, Any]:
        """Agree on ``values`` for the record and let propagation write them everywhere they map."""
        mapping = self._mapping(entity)
        typed = normalize(mapping, values)
        if typed.problems:
            raise PermanentError("; ".join(str(p) for p in typed.problems), system="hub", obj=entity)
        if self.one_write and self.written:
            raise RuntimeError(f"rule {self.rule_id!r}: an action declared as one write made a second one")
        self.written = True
        state = RecordState(self.rt.redis)
        outbox = self.outbox or outbox_name() + f":{self.key[:8]}"
        now_ms = int(clock.now().timestamp() * 1000)
        tracked = tracked_fields(self.rt.config, entity)
        call = hub_call(
            entity, key, typed.values, kind=kind, at_ms=now_ms, tracked=tracked, outbox=outbox, rule=self.rule_id,
            done=done_key(self.key) if self.one_write else "",
        )  # fmt: skip
        if self.defer is not None:
            self.defer.append(call)
            return {"fields": sorted(typed.values), "deferred": True}
        applied = state.apply(**call)
        if applied.already:
            return {"fields": sorted(typed.values), "changed": [], "already": True}
        if self.outbox is None:
            drain(self.rt, outbox)
        return {"fields": sorted(typed.values), "changed": [c[0] for c in applied.changed]}

    def _email(self) -> str:
        mapping = self._mapping()
        for name, fd in mapping.all_fields().items():
            if fd.type == "email" and (self.record or {}).get(name):
                return str((self.record or {})[name])
        raise PermanentError("the record has no email address", system="mailchimp", obj=mapping.entity)

    def _post(self, url: str, body: bytes, headers: dict[str, str], what: str) -> int:
        started = time.monotonic()
        try:
            resp = requests.post(url, data=body, headers=headers, timeout=HTTP_TIMEOUT)
            status = resp.status_code
        except requests.RequestException as exc:
            status = 0
            self._log_delivery(what, status, started, type(exc).__name__)
            raise TransientError(f"{what}: {type(exc).__name__}") from None
        self._log_delivery(what, status, started, "")
        if status == 429 or status >= 500:
            retry_after = resp.headers.get("Retry-After")
            raise TransientError(
                f"{what}: HTTP {status}",
                retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
            )
        if status >= 400:
            raise PermanentError(f"{what}: HTTP {status}", system="webhook", obj=what, status=status)
        return status

    def _log_delivery(self, what: str, status: int, started: float, error: str) -> None:
        entry = {
            "at": to_json(clock.now()),
            "target": what,
            "id": self.key,
            "rule": self.rule_id,
            "status": status,
            "ms": round((time.monotonic() - started) * 1000, 1),
            "error": error,
        }
        with self.rt.redis.pipeline(transaction=False) as pipe:
            pipe.lpush(DELIVERIES, json.dumps(entry))
            pipe.ltrim(DELIVERIES, 0, 9999)
            pipe.execute()

    # -- the ActionContext protocol ---------------------------------------------------------------
    def update_record(self, fields: dict[str, Any]) -> dict[str, Any]:
        if self.entity is None or self.record_key is None:
            raise ConfigError(f"rule {self.rule_id!r}: record.set needs a record")
        return self._write(self.entity, self.record_key, fields, "rule")

    def upsert_entity(self, entity: str, fields: dict[str, Any]) -> dict[str, Any]:
        mapping = self._mapping(entity)
        typed = normalize(mapping, fields)
        key = record_key(mapping, typed.values, "hub", "")
        if key.startswith("hub_id:"):
            raise PermanentError(
                f"record.upsert of {entity} needs one of its identity fields {mapping.identity}",
                system="hub",
                obj=entity,
            )
        return {"key_field": key.split(":", 1)[0], **self._write(entity, key, fields, "rule")}

    def append_journey(self, event: str, details: dict[str, Any]) -> dict[str, Any]:
        mapping = self._mapping()
        name = mapping.journey
        if name is None or self.record_key is None:
            raise ConfigError(f"entity {mapping.entity!r} declares no 'journey:' field for journey.append")
        state = RecordState(self.rt.redis)
        pending_key = f"hub:journey:{mapping.entity}:{self.record_key}"
        with state.locked([f"journey:{mapping.entity}:{self.record_key}"]):
            current = self._fresh_field(mapping, name)
            entries = list(current) if isinstance(current, list) else ([] if current in (None, "") else [current])
            # Entries the hub appended whose write has not reached the system yet (propagation is async).
            seen = {e.get("key") for e in entries if isinstance(e, dict)}
            for raw in self.rt.redis.lrange(pending_key, 0, -1):
                earlier = json.loads(raw)
                if earlier.get("key") not in seen:
                    entries.append(earlier)
                    seen.add(earlier.get("key"))
            entry = {"event": event, "at": to_json(clock.now()), "key": self.key[:12]}
            if details:
                entry["details"] = details
            if entry["key"] in seen:
                return {"appended": False}  # already there (a retried action)
            entries.append(entry)
            entries.sort(key=lambda e: str(e.get("at", "")) if isinstance(e, dict) else "")
            with self.rt.redis.pipeline() as pipe:
                pipe.rpush(pending_key, json.dumps(entry))
                pipe.ltrim(pending_key, -50, -1)
                pipe.expire(pending_key, 3600)
                pipe.execute()
            self._write(mapping.entity, self.record_key, {name: entries}, "rule")
        return {"appended": True}

    def _fresh_field(self, mapping: Mapping, name: str) -> Any:
        ids = RecordState(self.rt.redis).ids(mapping.entity, self.record_key or "")
        owner = mapping.owner_of(name)
        systems = [s for s, t in mapping.systems.items() if name in t.fields]
        systems.sort(key=lambda s: s != owner)
        for system in systems:
            if system in ids:
                rec = self.rt.connector(system).get(collection(mapping, system), ids[system])
                if rec is not None:
                    return from_system(mapping, system, rec).values.get(name)
        return (self.record or {}).get(name)

    def notify(self, channel: str, text: str) -> dict[str, Any]:
        channels = self.rt.config.rules_file.channels
        if channel not in channels:
            raise ConfigError(f"notify: no channel {channel!r} under 'channels:' in rules.yaml")
        body = json.dumps({"text": text}).encode()
        status = self._post(channels[channel].url, body, {"Content-Type": "application/json"}, f"channel:{channel}")
        return {"status": status}

    def send_webhook(self, target: str, type_: str, data: dict[str, Any]) -> dict[str, Any]:
        outbound = self.rt.config.rules_file.outbound
        if target not in outbound:
            raise ConfigError(f"webhook.send: no target {target!r} under 'outbound:' in rules.yaml")
        t = outbound[target]
        msg_id = f"msg_{self.key}"
        ts = int(time.time())
        body = json.dumps(
            {"type": type_, "timestamp": to_json(clock.now()), "data": to_json(data)},
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign_standard_webhook(t.secret, msg_id, ts, body),
        }
        status = self._post(t.url, body, headers, f"outbound:{target}")
        return {"status": status, "webhook_id": msg_id}

    def _hubspot_id(self) -> str | None:
        if self.record_key is None or self.entity is None:
            return None
        ids = RecordState(self.rt.redis).ids(self.entity, self.record_key)
        return ids.get("hubspot") or (self.record or {}).get("hubspot_id")

    def hubspot_create(self, object_type: str, properties: dict[str, Any]) -> dict[str, Any]:
        """Upsert on ``hub_action_key`` (a unique property the hub creates once): a retried action
        finds its object instead of creating a second one."""
        hubspot = self.rt.connector("hubspot")
        keyed: set[str] = hubspot.__dict__.setdefault("_hub_keyed", set())
        if object_type not in keyed:
            hubspot.ensure_schema(Collection(object_type), [ACTION_KEY_PROPERTY])
            keyed.add(object_type)
        props = {**{k: v for k, v in properties.items() if v not in (None, "")}, "hub_action_key": self.key}
        write = Write(props, match="hub_action_key")
        try:
            (created,) = hubspot.upsert_many(Collection(object_type), [write])
        except PermanentError as exc:
            if "hub_action_key" not in str(exc):
                raise
            hubspot.ensure_schema(Collection(object_type), [ACTION_KEY_PROPERTY])  # removed by someone: again
            (created,) = hubspot.upsert_many(Collection(object_type), [write])
        out: dict[str, Any] = {"id": created.id}
        record_hs = self._hubspot_id()
        if record_hs and self.entity is not None:
            mapping = self._mapping()
            if mapping.systems.hubspot is not None:
                hubspot.associate(object_type, created.id, mapping.systems.hubspot.object, record_hs)
                out["associated"] = record_hs
        return out

    def hubspot_associate(self, entity: str, other_id: str) -> dict[str, Any]:
        mapping = self._mapping()
        other = self._mapping(entity)
        mine = self._hubspot_id()
        if mapping.systems.hubspot is None or other.systems.hubspot is None or not mine:
            raise PermanentError("both records must live in HubSpot to be associated", system="hubspot")
        self.rt.connector("hubspot").associate(
            mapping.systems.hubspot.object, mine, other.systems.hubspot.object, other_id
        )
        return {"associated": [mine, other_id]}

    def _mailchimp(self) -> tuple[Any, str, str]:
        """The audience and address to act on: the record's own list, or — for a ticket, a booking —
        the list of the contact entity its email field points to."""
        mapping = self._mapping()
        target = mapping.systems.mailchimp
        if target is None:
            contacts = [m for m in self.rt.config.mappings.values() if m.systems.mailchimp is not None]
            if len(contacts) != 1:
                raise ConfigError(
                    f"entity {mapping.entity!r} is not mapped to mailchimp, and no single contact "
                    f"entity is ({len(contacts)} are)"
                )
            target = contacts[0].systems.mailchimp
        assert target is not None
        return self.rt.connector("mailchimp"), target.list, self._email()

    def _mailchimp_do(self, fn: Any) -> Any:
        """Run a member action; a member not in the audience yet (its sync may still be queued) is
        added first, with the consent the rule already checked."""
        mc, list_id, email = self._mailchimp()
        try:
            return fn(mc, list_id, email)
        except PermanentError as exc:
            if exc.status != 404:
                raise
        mc.upsert_many(Collection(list_id), [Write({"email_address": email}, match="email_address")])
        return fn(mc, list_id, email)

    def mailchimp_upsert(self, status_if_new: str, merge_fields: dict[str, Any]) -> dict[str, Any]:
        mc, list_id, email = self._mailchimp()
        mapping = self._mapping()
        fields = to_system(mapping, "mailchimp", {k: v for k, v in (self.record or {}).items() if v is not None})
        fields["email_address"] = email
        fields["status_if_new"] = status_if_new
        if merge_fields:
            fields.setdefault("merge_fields", {}).update(merge_fields)
        (rec,) = mc.upsert_many(Collection(list_id), [Write(fields, match="email_address")])
        return {"id": rec.id}

    def mailchimp_tags(self, add: list[str], remove: list[str]) -> dict[str, Any]:
        self._mailchimp_do(lambda mc, list_id, email: mc.tag(list_id, email, add=add, remove=remove))
        return {"added": add, "removed": remove}

    def mailchimp_event(self, name: str, properties: dict[str, str]) -> dict[str, Any]:
        props = {**properties, "hub_key": self.key[:32]}
        sent = self._mailchimp_do(lambda mc, list_id, email: mc.event_once(list_id, email, name, props, "hub_key"))
        return {"sent": sent}
