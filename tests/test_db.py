"""The SQLite background checkpointer (db._Checkpointer): committed pages
reach the database file without a request paying for the copy."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from openimpact.app import create_app
from openimpact.config import driver_url
from openimpact.db import Database
from tests.conftest import TestDatabase


def test_wal_pages_reach_the_database_file_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.db"
    db = Database(f"sqlite:///{path}")
    try:
        with db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE blobs (id INTEGER PRIMARY KEY, body TEXT)"))
        with db.engine.begin() as conn:
            conn.execute(
                text("INSERT INTO blobs (body) VALUES (:body)"),
                [{"body": "x" * 1000} for _ in range(2000)],
            )
        # Far below wal_autocheckpoint: only the background thread copies.
        deadline = time.monotonic() + 5
        while path.stat().st_size < 2_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size >= 2_000_000
        checkpointer = db._checkpointer
        assert checkpointer is not None
    finally:
        db.dispose()
    assert not checkpointer._thread.is_alive()


def test_no_checkpointer_for_an_in_memory_database() -> None:
    db = Database("sqlite:///:memory:")
    try:
        assert db._checkpointer is None
    finally:
        db.dispose()


def test_a_postgresql_without_autovacuum_is_named_at_startup(
    database: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """The server says so when PostgreSQL keeps no fresh planner statistics;
    SQLite has no such setting."""
    db = Database(driver_url(database.url))
    try:
        if db.is_sqlite:
            expected = False
        else:
            with db.engine.connect() as conn:
                expected = conn.execute(text("SHOW autovacuum")).scalar() == "off"
        with (
            caplog.at_level(logging.WARNING, logger="openimpact.app"),
            TestClient(create_app(database.settings())),
        ):
            pass
        named = [r for r in caplog.records if "autovacuum off" in r.getMessage()]
        assert bool(named) == expected
        assert db.settings_warnings() == [r.getMessage() for r in named]
    finally:
        db.dispose()


def test_sqlite_writes_off_the_event_loop_take_turns_with_every_writer(tmp_path: Path) -> None:
    """A write transaction in a thread (the background worker's) holds the
    turn of the file for its whole length, across processes (here, two
    Database objects on one file); a nested one in the same thread keeps it;
    a write on the event loop does not wait for it."""
    import asyncio
    import threading

    from openimpact.migrate import prepare_database

    url = f"sqlite:///{tmp_path / 'turns.db'}"
    prepare_database(url)
    first, second = Database(url), Database(url)
    order: list[str] = []
    inside = threading.Event()

    def hold(session: object) -> None:
        # Nested: the same thread keeps its turn.
        first.run_sync(lambda s: order.append("nested"), write=True)
        inside.set()
        time.sleep(0.3)
        order.append("first done")

    def other() -> None:
        inside.wait(5)
        second.run_sync(lambda s: order.append("second"), write=True)

    async def on_the_loop() -> float:
        inside.wait(5)
        started = time.monotonic()
        # No turn on the loop: it waits for SQLite's lock only, within SQLite.
        await first.run(lambda s: s.execute(text("SELECT 1")).scalar())
        return time.monotonic() - started

    try:
        holder = threading.Thread(target=first.run_sync, args=(hold,), kwargs={"write": True})
        waiter = threading.Thread(target=other)
        holder.start()
        waiter.start()
        read_wait = asyncio.run(on_the_loop())
        holder.join(10)
        waiter.join(10)
    finally:
        first.dispose()
        second.dispose()
    assert order == ["nested", "first done", "second"]
    assert read_wait < 0.25  # a read on the loop never queued for the turn


def test_a_job_writing_chunk_after_chunk_gives_the_turn_to_a_waiting_writer(
    tmp_path: Path,
) -> None:
    """A flock is not fair: a thread that lets go of the turn and takes it
    again at once would keep a waiting impact writer (another process's, or
    this one's) out for its whole job. After each transaction the thread gives
    way, so the waiter is in after one chunk."""
    import fcntl
    import os
    import threading

    from openimpact.db import write_turn_path
    from openimpact.migrate import prepare_database

    path = tmp_path / "fair.db"
    url = f"sqlite:///{path}"
    prepare_database(url)
    db = Database(url)
    writer = os.open(write_turn_path(str(path)), os.O_RDWR | os.O_CREAT)
    chunks: list[float] = []
    first = threading.Event()

    def chunk(session: object) -> None:
        first.set()
        time.sleep(0.02)
        chunks.append(time.monotonic())

    def job() -> None:
        for _ in range(20):  # 0.4 s of chunks in a row
            db.run_sync(chunk, write=True)

    try:
        worker = threading.Thread(target=job)
        worker.start()
        assert first.wait(5)
        fcntl.flock(writer, fcntl.LOCK_EX)  # the writer waits for its turn
        got_in = time.monotonic()
        done_before = len(chunks)
        time.sleep(0.05)
        fcntl.flock(writer, fcntl.LOCK_UN)
        worker.join(10)
    finally:
        os.close(writer)
        db.dispose()
    assert len(chunks) == 20
    assert done_before <= 2, f"the waiter got its turn after {done_before} chunks"
    # While the writer held its turn, the job waited.
    assert not [t for t in chunks if got_in < t < got_in + 0.05]
