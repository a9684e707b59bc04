"""The webhook receiver of the bench: a process of its own that answers every
POST with 200 as fast as it can, and counts.

``python -m bench.receiver --port P`` serves HTTP/1.1 with keep-alive on
127.0.0.1 (uvloop, and the httptools parser uvicorn uses; no framework, so
that it costs the worker's machine as little as a receiver can). Every POST
is counted, and every ``webhook-id`` not seen before is recorded with the time
it arrived (``time.monotonic()``: CLOCK_MONOTONIC, which all processes of
the machine share, so the bench compares it with its own clock).

``GET /stats`` answers the counts as JSON; ``POST /reset`` forgets everything.
Both are on the same port, so the bench needs no other channel.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import httptools

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"
OK_CLOSE = (
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n"
    b"connection: close\r\n\r\nok"
)


class Counts:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.ids: set[bytes] = set()
        self.first_at: float | None = None  # the first POST
        self.last_new_at: float | None = None  # the latest id not seen before
        self.last_at: float | None = None  # the latest POST
        self.connections = 0
        self.peak_connections = 0
        self.open_connections = 0
        self.bytes = 0

    def json(self) -> bytes:
        return json.dumps(
            {
                "requests": self.requests,
                "distinct": len(self.ids),
                "duplicates": self.requests - len(self.ids),
                "first_at": self.first_at,
                "last_new_at": self.last_new_at,
                "last_at": self.last_at,
                "connections": self.connections,
                "peak_connections": self.peak_connections,
                "body_bytes": self.bytes,
                "now": time.monotonic(),
            }
        ).encode()


COUNTS = Counts()


class Hook(asyncio.Protocol):
    """One connection; requests are answered in order (pipelining works too)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.url = b""
        self.webhook_id: bytes | None = None
        self.body_bytes = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        COUNTS.connections += 1
        COUNTS.open_connections += 1
        COUNTS.peak_connections = max(COUNTS.peak_connections, COUNTS.open_connections)

    def connection_lost(self, exc: Exception | None) -> None:
        COUNTS.open_connections -= 1

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.webhook_id = None
        self.body_bytes = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 10 and name.lower() == b"webhook-id":
            self.webhook_id = value

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        keep = self.parser.should_keep_alive()
        if method == b"GET" and self.url.startswith(b"/stats"):
            body = COUNTS.json()
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
        elif method == b"POST" and self.url.startswith(b"/reset"):
            COUNTS.reset()
            self.transport.write(OK)
        else:
            now = time.monotonic()
            c = COUNTS
            c.requests += 1
            c.bytes += self.body_bytes
            c.last_at = now
            if c.first_at is None:
                c.first_at = now
            if self.webhook_id is not None and self.webhook_id not in c.ids:
                c.ids.add(self.webhook_id)
                c.last_new_at = now
            self.transport.write(OK if keep else OK_CLOSE)
        if not keep:
            self.transport.close()


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Hook, "127.0.0.1", port, backlog=4096, reuse_address=True)
    print(f"receiver ready on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.receiver")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    try:
        import uvloop

        uvloop.run(serve(args.port))
    except ImportError:  # still correct, only slower
        asyncio.run(serve(args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
