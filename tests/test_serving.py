"""``openimpact serve --workers N`` (openimpact/serving.py): each worker on a
socket of its own, connections spread over them, a worker that dies replaced,
all of them stopped with the server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from openimpact import serving
from tests.conftest import TestDatabase
from tests.live import LiveServer, free_port, server_env

pytestmark = pytest.mark.skipif(
    not serving.balanced_sockets(), reason="per-worker sockets are balanced on Linux only"
)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after it.
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            out.append(int(entry.name))
    return sorted(out)


def _workers(live: LiveServer) -> list[int]:
    """The server's worker processes (multiprocessing's resource tracker is
    not one: it holds no socket)."""
    assert live.process is not None
    return [pid for pid in _children(live.process.pid) if _socket_inodes(pid)]


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except OSError:
        pass
    return inodes


def _listening(live: LiveServer) -> set[int]:
    """The workers whose own socket listens (their application has started)."""
    listeners = {
        int(fields[9])
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
        if (fields := line.split())[3] == "0A" and int(fields[1].split(":")[1], 16) == live.port
    }
    return {pid for pid in _workers(live) if _socket_inodes(pid) & listeners}


def _server_side_inodes(server_port: int) -> dict[int, int]:
    """Client port → inode of the server's end of each established loopback
    connection to ``server_port``."""
    found = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
        if state == "01" and int(local.split(":")[1], 16) == server_port:
            found[int(remote.split(":")[1], 16)] = inode
    return found


@pytest.fixture
def live(sqlite_database: TestDatabase, tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(
        server_env(sqlite_database.url), workers=2, log=tmp_path / "server.log"
    ).start()
    try:
        # /healthz answers once one worker has started; the other listens
        # once its own application has started.
        deadline = time.monotonic() + 60
        while len(_listening(server)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_listening(server)) == 2
        yield server
    finally:
        server.stop()


def _connections_by_worker(live: LiveServer, count: int) -> Counter[int]:
    """Open ``count`` connections at once, each answered once (so it was
    accepted), and tell which worker holds each."""
    clients = [socket.create_connection(("127.0.0.1", live.port)) for _ in range(count)]
    try:
        for client in clients:
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        for client in clients:
            assert client.recv(4096).startswith(b"HTTP/1.1 200")
        ends = _server_side_inodes(live.port)
        owners = {pid: _socket_inodes(pid) for pid in _workers(live)}
        held: Counter[int] = Counter()
        for client in clients:
            inode = ends[client.getsockname()[1]]
            held.update(pid for pid, inodes in owners.items() if inode in inodes)
        assert sum(held.values()) == count
        return held
    finally:
        for client in clients:
            client.close()


def test_connections_opened_at_once_are_spread_over_the_workers(live: LiveServer) -> None:
    """32 connections opened together (a client's pool) land on both workers:
    with one shared socket, one worker took nearly all of them. By a hash of
    the addresses, so fewer than 4 of 32 on one worker is a one-in-a-million
    draw."""
    held = _connections_by_worker(live, 32)
    assert len(held) == 2, held
    assert min(held.values()) >= 4, held


def test_a_worker_that_dies_is_replaced_and_the_server_keeps_answering(
    live: LiveServer,
) -> None:
    first, second = _workers(live)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = _workers(live)
        if len(workers) == 2 and first not in workers:
            break
        time.sleep(0.1)
    assert second in workers and len(workers) == 2, workers
    # The new worker listens once its application has started, and then
    # takes its share of new connections.
    deadline = time.monotonic() + 60
    while len(_listening(live)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _listening(live) == set(workers)
    assert set(_connections_by_worker(live, 32)) == set(workers)
    for _ in range(20):
        assert httpx.get(f"{live.url}/healthz", timeout=5).status_code == 200
    assert live.log is not None
    assert f"Worker [{first}] exited with -9; starting another" in live.log.read_text()


def test_stopping_the_server_stops_every_worker(live: LiveServer) -> None:
    assert live.process is not None
    workers = _workers(live)
    assert len(workers) == 2
    live.process.send_signal(signal.SIGTERM)  # the parent alone
    assert live.process.wait(timeout=30) == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{live.url}/healthz", timeout=2)


def _state(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}") / "status").read_text().lower()
    except OSError:
        return "zombie"


def test_an_address_in_use_is_a_clear_error(sqlite_database: TestDatabase) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        command = [sys.executable, "-m", "openimpact.cli", "serve", "--port", str(port)]
        done = subprocess.run(
            [*command, "--workers", "2"],
            env=server_env(sqlite_database.url),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Address already in use" in done.stderr


def test_workers_must_be_at_least_one(sqlite_database: TestDatabase) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "openimpact.cli", "serve", "--workers", "0"],
        env=server_env(sqlite_database.url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "argument --workers: must be at least 1, not 0" in done.stderr
