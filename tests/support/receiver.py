"""A loopback HTTP endpoint that records what is POSTed to it (notify channels, outbound webhooks)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self, statuses: list[int] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses = list(statuses or [])  # answered in order, then 200
        self._lock = threading.Lock()
        self.url = ""

    @property
    def bodies(self) -> list[Any]:
        with self._lock:
            return [r["json"] for r in self.requests]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer._lock:
                    status = outer.statuses.pop(0) if outer.statuses else 200
                    try:
                        parsed = json.loads(raw)
                    except ValueError:
                        parsed = None
                    outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": raw,
                                           "json": parsed, "status": status})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@contextmanager
def receiving(statuses: list[int] | None = None) -> Iterator[Receiver]:
    rec = Receiver(statuses)
    server = ThreadingHTTPServer(("127.0.0.1", 0), rec._handler())
    rec.url = f"http://127.0.0.1:{server.server_port}/hook"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
