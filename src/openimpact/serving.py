"""Serving the application on several worker processes, each with its own
listening socket.

uvicorn's supervisor binds one socket in the parent and every worker accepts
from it: the worker the kernel wakes first takes every connection queued at
that moment, and a client that opens its connection pool at once (a checkout
backend, a load balancer, wrk) lands on one worker. Measured with 2 workers
and 32 connections opened together, six times: one worker held 30 to 32 of
them five times out of six, and the other idled while it did (the bench's
two-worker figures were about its one-worker figures).

On Linux each worker here binds a socket of its own to the address with
``SO_REUSEPORT``, and the kernel spreads new connections over those sockets by
a hash of the connection's addresses (https://lwn.net/Articles/542629/). A
worker's socket starts listening only once its application has started, so
no connection waits on a worker that cannot answer yet. The parent holds the
address with a socket of the same group that never listens (the port stays
the server's while a worker restarts), restarts a worker that exits, and
stops every worker on SIGINT or SIGTERM.

With one worker, or where the kernel does not balance such sockets (not
Linux), ``uvicorn.run`` serves as it always did.

The price of per-worker sockets: connections waiting in the queue of a worker
that dies or stops are reset rather than taken by another worker; a client
retries them like any dropped connection (impact POSTs with their
Idempotency-Key).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import uvicorn

log = logging.getLogger("uvicorn.error")

# A worker that exits sooner than this after its start waits before it is
# started again, twice as long each time up to the last delay.
_QUICK_EXIT_S = 5.0
_RESTART_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0)
_STOP_TIMEOUT_S = 30.0
_INTERRUPT_GRACE_S = 2.0


def balanced_sockets() -> bool:
    """Whether the kernel spreads connections over ``SO_REUSEPORT`` sockets."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def run(app: str, *, host: str, port: int, workers: int = 1, **options: Any) -> None:
    """Serve ``app`` (an import string) as ``uvicorn.run`` would, with
    ``workers`` processes that each listen on a socket of their own."""
    if workers <= 1 or not balanced_sockets():
        uvicorn.run(app, host=host, port=port, workers=workers, **options)
        return
    sys.exit(Supervisor(app, host, port, workers, options).run())


def _family(host: str) -> socket.AddressFamily:
    # As uvicorn chooses: an IPv6 literal has a colon.
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def bind_shared(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` in the address's ``SO_REUSEPORT``
    group, not listening."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


def _serve_worker(app: str, host: str, port: int, options: dict[str, Any]) -> None:
    """One worker process: its own socket, then uvicorn's server on it (which
    listens once the application has started)."""
    sock = bind_shared(host, port)
    config = uvicorn.Config(app, host=host, port=port, **options)
    uvicorn.Server(config).run(sockets=[sock])


class Supervisor:
    def __init__(
        self, app: str, host: str, port: int, workers: int, options: dict[str, Any]
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.workers = workers
        self.options = options
        self._context = multiprocessing.get_context("spawn")
        self._processes: list[multiprocessing.process.BaseProcess] = []
        self._started: list[float] = []
        self._quick_exits: list[int] = []
        self._stopping = threading.Event()
        self._signal: int | None = None

    def run(self) -> int:
        try:
            holder = bind_shared(self.host, self.port)
        except OSError as exc:
            print(f"openimpact: cannot listen on {self.host}:{self.port}: {exc}", file=sys.stderr)
            return 1
        self.port = holder.getsockname()[1]  # port 0: the one the kernel chose, for all
        uvicorn.Config(self.app, **self.options)  # configures logging, as in the workers
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            shown = f"[{self.host}]" if ":" in self.host else self.host
            log.info(
                "Started parent process [%d]: %d workers serving http://%s:%d, "
                "each on a socket of its own",
                os.getpid(),
                self.workers,
                shown,
                self.port,
            )
            for _ in range(self.workers):
                self._processes.append(self._start())
                self._started.append(time.monotonic())
                self._quick_exits.append(0)
            while not self._stopping.wait(0.25):
                self._keep_alive()
            self._stop_all()
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            holder.close()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._signal = signum
        self._stopping.set()

    def _start(self) -> multiprocessing.process.BaseProcess:
        process = self._context.Process(
            target=_serve_worker,
            args=(self.app, self.host, self.port, self.options),
            name="openimpact-worker",
        )
        process.start()
        return process

    def _keep_alive(self) -> None:
        now = time.monotonic()
        for n, process in enumerate(self._processes):
            if process.is_alive() or self._stopping.is_set():
                continue
            quick = now - self._started[n] < _QUICK_EXIT_S
            self._quick_exits[n] = self._quick_exits[n] + 1 if quick else 0
            delay = (
                _RESTART_DELAYS_S[min(self._quick_exits[n], len(_RESTART_DELAYS_S)) - 1]
                if quick
                else 0.0
            )
            log.warning(
                "Worker [%s] exited with %s; starting another%s",
                process.pid,
                process.exitcode,
                f" in {delay:g} s" if delay else "",
            )
            process.join()
            if delay and self._stopping.wait(delay):
                return
            self._processes[n] = self._start()
            self._started[n] = time.monotonic()

    def _stop_all(self) -> None:
        if self._signal == signal.SIGINT:
            # Ctrl-C in a terminal reached the workers too, and each is
            # stopping already: a second signal would make it drop its
            # connections instead of finishing them.
            deadline = time.monotonic() + _INTERRUPT_GRACE_S
            for process in self._processes:
                process.join(max(0.0, deadline - time.monotonic()))
        for process in self._processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes its connections
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        for process in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("Worker [%s] did not stop in time; killed", process.pid)
                process.kill()
                process.join()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m openimpact.serving APP [options]``: the same serving for
    any ASGI application (the bench serves its ceiling with it, so that the
    ceiling and the server differ only in the application)."""
    p = argparse.ArgumentParser(prog="python -m openimpact.serving")
    p.add_argument("app", help="module:attribute")
    p.add_argument("--factory", action="store_true")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--loop", default="auto")
    p.add_argument("--http", default="auto")
    p.add_argument("--log-level", default="info")
    p.add_argument("--no-access-log", action="store_true")
    p.add_argument("--no-server-header", action="store_true")
    args = p.parse_args(argv)
    run(
        args.app,
        host=args.host,
        port=args.port,
        workers=args.workers,
        factory=args.factory,
        loop=args.loop,
        http=args.http,
        log_level=args.log_level,
        access_log=not args.no_access_log,
        server_header=not args.no_server_header,
    )


if __name__ == "__main__":
    main()
