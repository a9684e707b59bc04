"""A real HTTP receiver for webhook tests: a threaded server on 127.0.0.1
that records every request and answers as the test tells it.

Its URL starts with a path of its own (``/<random>/hook``): a port is
reused once freed, and endpoints of earlier tests in the same database may
still have retries due to a receiver that listened on it. Requests outside
that path are answered 404 and not recorded; recorded paths are shown
without it (``/hook``, ``/hook/…``)."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


# (status, headers, body) for a request; default 200.
Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Receiver:
    url: str = ""
    requests: list[Received] = field(default_factory=list)
    # Called for each request: the answer to give (may sleep to be slow).
    respond: Callable[[Received], Answer] = lambda _r: (200, {}, b"ok")
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ids(self) -> list[str]:
        with self.lock:
            return [r.headers["webhook-id"] for r in self.requests]

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"received {len(self.requests)} requests, expected {count}")


@contextmanager
def running(receiver: Receiver | None = None) -> Iterator[Receiver]:
    receiver = receiver or Receiver()
    own = f"/{secrets.token_hex(6)}"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            if not self.path.startswith(own + "/"):
                self._answer(404, {}, b"")  # meant for an earlier receiver on this port
                return
            got = Received(
                self.path[len(own) :],
                {k.lower(): v for k, v in self.headers.items()},
                body,
                time.time(),
            )
            with receiver.lock:
                receiver.requests.append(got)
            self._answer(*receiver.respond(got))

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            return

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            return  # a sender that went away (a killed worker, a timeout)

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}{own}/hook"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
