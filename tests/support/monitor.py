"""What a real redis-server receives while a test runs (MONITOR)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import redis


@contextlib.contextmanager
def commands(conn: redis.Redis) -> Iterator[list[str]]:
    """The commands Redis receives meanwhile (MONITOR, from a thread of its own)."""
    sent: list[str] = []
    ready = threading.Event()

    def listen() -> None:
        with conn.monitor() as monitor:
            ready.set()
            for cmd in monitor.listen():
                if cmd["command"] == "ECHO monitor-done":
                    return
                sent.append(cmd["command"])

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    ready.wait(5)
    time.sleep(0.1)
    try:
        yield sent
    finally:
        conn.echo("monitor-done")
        thread.join(10)
