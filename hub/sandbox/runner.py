"""``hub sandbox``: the four stand-ins on loopback, and the settings that point the hub at them.

Airtable, HubSpot and Mailchimp are our own stand-ins (threads in this process); Firestore is
Google's official emulator (a child process). With ``--data`` every one keeps its state across
restarts. Ports are ``port_base + 0..3`` (airtable, hubspot, mailchimp, firestore) or free ones.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.sandbox import airtable, hubspot, mailchimp
from hub.sandbox.common import ServerHandle, serve
from hub.sandbox.firestore import FirestoreEmulator

log = logging.getLogger("hub.sandbox")
ORDER = ("airtable", "hubspot", "mailchimp", "firestore")


@dataclass
class Sandbox:
    handles: dict[str, ServerHandle] = field(default_factory=dict)
    firestore: FirestoreEmulator | None = None
    env: dict[str, str] = field(default_factory=dict)
    startup_seconds: float = 0.0

    def stop(self) -> None:
        for name in reversed(ORDER):
            handle = self.handles.pop(name, None)
            if handle is not None:
                handle.stop()
        if self.firestore is not None:
            self.firestore.stop()
            self.firestore = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start(
    *,
    port_base: int | None = None,
    data_dir: str | Path | None = None,
    firestore: bool = True,
    airtable_penalty: float = 30.0,
) -> Sandbox:
    """Start every stand-in; on any failure, stop what started and raise. No access log: it would
    print query strings, keys included."""
    began = time.monotonic()
    data = Path(data_dir) if data_dir else None
    if data:
        data.mkdir(parents=True, exist_ok=True)

    def port(i: int) -> int:
        return 0 if port_base is None else port_base + i

    box = Sandbox()
    try:
        at = airtable.AirtableStandIn(data_dir=str(data) if data else None, penalty_seconds=airtable_penalty)
        box.handles["airtable"] = serve(at, port(0))
        box.env.update(airtable.exports(box.handles["airtable"].url, at))
        hs = hubspot.HubSpotStandIn(data_dir=str(data) if data else None)
        box.handles["hubspot"] = serve(hs, port(1))
        box.env.update(hubspot.exports(box.handles["hubspot"].url, hs))
        mc = mailchimp.MailchimpStandIn(data_dir=str(data) if data else None)
        box.handles["mailchimp"] = serve(mc, port(2))
        box.env.update(mailchimp.exports(box.handles["mailchimp"].url, mc))
        if firestore:
            box.firestore = FirestoreEmulator()
            box.firestore.start(port=port(3), data_dir=(data / "firestore") if data else None)
            box.env.update(box.firestore.exports())
    except BaseException:
        box.stop()
        raise
    box.startup_seconds = time.monotonic() - began
    return box
