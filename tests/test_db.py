"""The SQLite background checkpointer (db._Checkpointer): committed pages
reach the database file without a request paying for the copy."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import text

from openimpact.db import Database


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
