"""A threaded HTTP(S) server on 127.0.0.1 for the CRM fakes, with fault injection.

The fakes are plain classes with a ``handle(request) -> Reply`` method; this module
serves them over real sockets so the vendors' SDKs talk to them exactly as they
talk to the real APIs, through their own connection pools and TLS stacks.

The standard library server is used on purpose: a fault such as a dropped
connection or an answer that never comes needs the raw socket, which ASGI
servers do not hand to the application.

Faults are chosen per request, before the fake sees it:

=============  ==========================================================
``throttle``   the fake's own 429 answer (``fake.throttled()``)
``error``      the fake's own 5xx answer (``fake.server_error()``)
``drop``       the connection is closed before the request is processed
``lost``       the request is processed, then the connection is closed
``stall``      the request is processed, the answer is held ``stall_seconds``
=============  ==========================================================

``lost`` and ``stall`` model an answer lost in transit: the CRM wrote the object
but the caller cannot know it.
"""

from __future__ import annotations

import collections
import json
import random
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

FAULT_KINDS = ("throttle", "error", "drop", "lost", "stall")


@dataclass
class Request:
    """One request as the fake sees it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Reply:
    """One answer: a status, a JSON-able body and extra headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class Fake(Protocol):
    def handle(self, request: Request) -> Reply: ...

    def throttled(self) -> Reply: ...

    def server_error(self) -> Reply: ...


@dataclass
class Faults:
    """What goes wrong, and how often.

    ``rates`` maps a fault kind to its probability per request; ``script`` holds
    faults forced on the next requests, in order, ahead of any random draw.
    ``exempt`` lists path prefixes that never fail (token endpoints, say).
    """

    rates: dict[str, float] = field(default_factory=dict)
    script: collections.deque[str] = field(default_factory=collections.deque)
    latency: float = 0.0
    stall_seconds: float = 5.0
    exempt: tuple[str, ...] = ()
    seed: int = 0
    injected: collections.Counter[str] = field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()

    def draw(self, path: str) -> str | None:
        if self.exempt and path.startswith(self.exempt):
            return None
        with self._lock:
            kind = self.script.popleft() if self.script else self._random_kind()
            if kind is not None:
                self.injected[kind] += 1
        return kind

    def _random_kind(self) -> str | None:
        roll = self._random.random()
        for kind in FAULT_KINDS:
            roll -= self.rates.get(kind, 0.0)
            if roll < 0:
                return kind
        return None

    def clear(self) -> None:
        with self._lock:
            self.rates.clear()
            self.script.clear()
            self.latency = 0.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes; without this the body waits for
    # the client's delayed ACK (40 ms) and every latency figure is wrong.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def _serve(self) -> None:
        request = self._read_request()
        faults = self.server.faults
        if faults.latency:
            time.sleep(faults.latency)
        kind = faults.draw(request.path)

        if kind == "drop":
            self._drop()
            return
        if kind == "throttle":
            self._write(self.server.fake.throttled())
            return
        if kind == "error":
            self._write(self.server.fake.server_error())
            return

        try:
            reply = self.server.fake.handle(request)
        except Exception as error:
            # A defect in a fake must not pass for an injected fault.
            self.server.crashes.append(f"{request.method} {request.path}: {error!r}")
            reply = Reply(500, {"fake_crash": type(error).__name__})
        if kind == "lost":
            self._drop()
            return
        if kind == "stall":
            time.sleep(faults.stall_seconds)
        self._write(reply)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    def _read_request(self) -> Request:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        return Request(self.command, parts.path, parse_qs(parts.query), headers, body)

    def _write(self, reply: Reply) -> None:
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if payload:
                self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    def _drop(self) -> None:
        self.close_connection = True
        try:
            # A zero linger turns the close into a reset, as a failing proxy does.
            linger = struct.pack("ii", 1, 0)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            self.connection.close()
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(
        self, fake: Fake, faults: Faults, ssl_context: ssl.SSLContext | None
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake
        self.faults = faults
        self.crashes: list[str] = []
        if ssl_context is not None:
            # The handshake happens in the connection's own thread, not in accept().
            self.socket = ssl_context.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up mid-answer are part of the tests."""


@contextmanager
def serve(
    fake: Fake,
    faults: Faults | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Iterator[str]:
    """Serve ``fake`` on an ephemeral port; yield its base URL."""
    server = _Server(fake, faults or Faults(), ssl_context)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    scheme = "https" if ssl_context is not None else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    if server.crashes:
        raise AssertionError(f"the fake crashed: {server.crashes}")
