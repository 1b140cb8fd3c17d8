"""A small loopback TCP proxy that misbehaves on purpose, for services we do not re-implement.

The HTTP stand-ins inject faults themselves; the Firestore emulator speaks gRPC and cannot. This
proxy sits between a client and it: it can delay every chunk (latency) and, at a seeded rate or
on demand, cut a connection with a TCP reset just before forwarding a client chunk. A gRPC
client then sees UNAVAILABLE, the analogue of an HTTP 503. Threads are bounded by
``max_connections`` and everything stops with :meth:`TcpProxy.stop`.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ProxyFaults:
    """What the proxy does wrong; change at run time with :meth:`TcpProxy.update`."""

    latency_ms: float = 0.0  # added before forwarding each chunk, both directions
    cut_rate: float = 0.0  # chance, per client-to-server chunk, to reset the connection instead
    seed: int | None = None
    _rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._check()
        if self.seed is not None:
            self._rng.seed(self.seed)

    def _check(self) -> None:
        if not 0.0 <= self.cut_rate <= 1.0:
            raise ValueError(f"cut_rate must be within 0..1, got {self.cut_rate!r}")
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must be ≥ 0, got {self.latency_ms!r}")

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


def _parse(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    return host, int(port)


class TcpProxy:
    """``host:port`` (``port=0`` picks one) forwarding to ``upstream`` ("HOST:PORT")."""

    def __init__(
        self,
        upstream: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: ProxyFaults | None = None,
        max_connections: int = 64,
        chunk_size: int = 65536,
    ) -> None:
        self.upstream = _parse(upstream)
        self.faults = faults or ProxyFaults()
        self.max_connections = max_connections
        self.chunk_size = chunk_size
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._cut_next = 0
        self._links: set[_Link] = set()
        self._counts = {"connections": 0, "refused": 0, "cuts": 0, "bytes_up": 0, "bytes_down": 0}
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.host, self.port = self._listener.getsockname()[:2]
        self._acceptor: threading.Thread | None = None

    @property
    def host_port(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> TcpProxy:
        self._acceptor = threading.Thread(target=self._accept_loop, name="tcpproxy-accept", daemon=True)
        self._acceptor.start()
        return self

    def update(self, **values: Any) -> None:
        """Change faults (``latency_ms``, ``cut_rate``, ``seed``) while running."""
        known = set(self.faults.as_dict())
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown proxy fault setting(s) {sorted(unknown)}; known: {sorted(known)}")
        ProxyFaults(**{**self.faults.as_dict(), **values, "seed": None})._check()  # refuse before applying
        with self._lock:
            for key, value in values.items():
                setattr(self.faults, key, value)
            if values.get("seed") is not None:
                self.faults._rng.seed(values["seed"])

    def cut_next(self, n: int = 1) -> None:
        """Reset the connection carrying each of the next ``n`` client chunks (deterministic faults)."""
        if n < 0:
            raise ValueError(f"n must be ≥ 0, got {n!r}")
        with self._lock:
            self._cut_next = n

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {**self._counts, "active": len(self._links)}

    def stop(self) -> None:
        self._stop.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout=2)
        self._listener.close()
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close()
        for link in links:
            for t in link.threads:
                t.join(timeout=2)

    def __enter__(self) -> TcpProxy:
        return self.start() if self._acceptor is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                full = len(self._links) >= self.max_connections
                self._counts["refused" if full else "connections"] += 1
            if full:
                _close(client, reset=True)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client, reset=True)
                continue
            for s in (client, server):
                s.settimeout(0.2)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(client, server)
            with self._lock:
                self._links.add(link)
            for src, dst, up in ((client, server, True), (server, client, False)):
                t = threading.Thread(target=self._pump, args=(link, src, dst, up), name="tcpproxy-pump", daemon=True)
                link.threads.append(t)
                t.start()

    def _should_cut(self) -> bool:
        with self._lock:
            if self._cut_next > 0:
                self._cut_next -= 1
                return True
            return self.faults.cut_rate > 0 and self.faults._rng.random() < self.faults.cut_rate

    def _pump(self, link: _Link, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while not self._stop.is_set():
                try:
                    data = src.recv(self.chunk_size)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)  # pass the half-close on
                    break
                if up and self._should_cut():
                    with self._lock:
                        self._counts["cuts"] += 1
                    link.close(reset=True)
                    break
                if self.faults.latency_ms > 0:
                    time.sleep(self.faults.latency_ms / 1000.0)
                try:
                    dst.sendall(data)
                except OSError:
                    break
                with self._lock:
                    self._counts["bytes_up" if up else "bytes_down"] += len(data)
        finally:
            with self._lock:
                link.pumps -= 1
                last = link.pumps == 0
                if last:
                    self._links.discard(link)
            if last:
                link.close()


class _Link:
    """One proxied connection: the client's socket, ours to the server, and their two pumps."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.pumps = 2
        self.threads: list[threading.Thread] = []

    def close(self, *, reset: bool = False) -> None:
        _close(self.client, reset=reset)
        _close(self.server, reset=reset)


def _close(sock: socket.socket, *, reset: bool = False) -> None:
    try:
        if reset:  # SO_LINGER 0: close with RST, as a dropped connection looks to the peer
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass
