"""What a statement made the database read, counted by the database itself,
not timed: on PostgreSQL the rows that scans of a table and its indexes
returned during the statement's transaction (pg_stat_get_xact_tuples_returned:
rows of sequential scans, entries of index scans), on SQLite the steps of its
virtual machine (a progress handler called every step), which cover every
table the statement touched."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from openimpact.db import Database

T = TypeVar("T")


def reads(db: Database, table_name: str, fn: Callable[[Session], T]) -> tuple[T, int]:
    """``fn``'s answer and what it made the database read (of ``table_name``
    on PostgreSQL), in a write transaction rolled back after."""
    with db.connect(write=True) as conn, conn.begin() as transaction:
        session = Session(bind=conn)
        try:
            if db.is_sqlite:
                steps = 0

                def step() -> int:
                    nonlocal steps
                    steps += 1
                    return 0

                driver = conn.connection.driver_connection
                driver.set_progress_handler(step, 1)  # type: ignore[union-attr]
                try:
                    answer = fn(session)
                finally:
                    driver.set_progress_handler(None, 1)  # type: ignore[union-attr]
                return answer, steps
            # The counts also hold what earlier transactions of this
            # connection read and the backend has not yet reported: only
            # the difference is fn's.
            before = _returned(conn, table_name)
            answer = fn(session)
            return answer, _returned(conn, table_name) - before
        finally:
            transaction.rollback()


def _returned(conn: Connection, table_name: str) -> int:
    """Rows and index entries that scans of ``table_name`` returned, as the
    backend counts them until it reports them."""
    read = conn.execute(
        text(
            "SELECT pg_stat_get_xact_tuples_returned(CAST(:t AS regclass))"
            " + (SELECT coalesce(sum(pg_stat_get_xact_tuples_returned(indexrelid)), 0)"
            " FROM pg_index WHERE indrelid = CAST(:t AS regclass))"
        ),
        {"t": table_name},
    ).scalar_one()
    return int(read)
