"""How stand-ins are served: connections kept alive as a vendor's API keeps them (one TCP connection
for many requests), a clean stop, and a stand-in in a process of its own for benchmarks."""

from __future__ import annotations

import base64
import http.client
import os
import socket

import pytest

from hub.sandbox import mailchimp
from hub.sandbox.common import serve, serve_apart


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"anystring:{key}".encode()).decode()}


def _get_twice(port: int, path: str, headers: dict[str, str]) -> list[tuple[int, str | None]]:
    """Two requests on one connection: (status, Connection header) of each. A server that closes
    after the first answer fails the second request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    out = []
    try:
        for _ in range(2):
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            resp.read()
            out.append((resp.status, resp.getheader("Connection")))
            assert conn.sock is not None, "the server closed the connection after its answer"
    finally:
        conn.close()
    return out


def test_one_connection_serves_many_requests_and_stop_closes_it() -> None:
    standin = mailchimp.MailchimpStandIn()
    handle = serve(standin)
    env = mailchimp.exports(handle.url, standin)
    path = f"/3.0/lists/{env['MAILCHIMP_LIST_ID']}"
    assert _get_twice(handle.port, path, _auth(env["MAILCHIMP_API_KEY"])) == [(200, None), (200, None)]
    # A connection left idle after its request must not hold the stop back, and stop frees the port.
    idle = socket.create_connection(("127.0.0.1", handle.port), timeout=5)
    idle.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert idle.makefile("rb").read(12) == b"HTTP/1.1 401"  # answered (no key): the server keeps it open
    handle.stop()
    assert not handle.thread.is_alive()
    rest = idle.recv(65536)
    while rest:  # what is left of the answer, then the end of the stream (not a time-out)
        rest = idle.recv(65536)
    idle.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", handle.port), timeout=1)


def test_a_stand_in_served_from_its_own_process() -> None:
    handle = serve_apart(mailchimp.MailchimpStandIn, mailchimp.exports)
    try:
        assert handle.pid != os.getpid()
        port = int(handle.env["MAILCHIMP_HOST"].rsplit(":", 1)[1])
        path = f"/3.0/lists/{handle.env['MAILCHIMP_LIST_ID']}"
        assert _get_twice(port, path, _auth(handle.env["MAILCHIMP_API_KEY"])) == [(200, None), (200, None)]
    finally:
        handle.stop()
    assert not handle.proc.is_alive()
    assert handle.proc.exitcode == 0  # it stopped on its own (stop() only kills one that does not)
