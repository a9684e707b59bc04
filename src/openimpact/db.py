"""Engine, metadata and the one place where transactions begin and commit.

Services receive a :class:`~sqlalchemy.orm.Session` that is already inside a
transaction; they may flush but never commit. :meth:`Database.run` is the
request boundary: it commits when the service returns and rolls back when it
raises, so an impact, its totals and its outbox messages land together or not
at all.

Why services run inline on SQLite: SQLite answers from the same process in
microseconds and takes one writer at a time anyway, so a hop to a worker thread
would cost more than the query. PostgreSQL answers over a socket, so there the
work runs in the thread pool and the event loop stays free.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar, cast

import anyio.to_thread
import orjson
from sqlalchemy import (
    BigInteger,
    Connection,
    CursorResult,
    Engine,
    Integer,
    MetaData,
    Table,
    create_engine,
    event,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

try:
    import fcntl
except ImportError:  # not on Windows: SQLite's own wait for its lock applies
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

T = TypeVar("T")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only makes INTEGER PRIMARY KEY an alias of the rowid (and so
# auto-incrementing); PostgreSQL wants BIGINT for tables that grow without bound.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def table(model: type[Base]) -> Table:
    """The Core table of a model, for hot paths that skip the ORM unit of work."""
    return cast(Table, model.__table__)


def rowcount(result: Any) -> int:
    """Rows matched by an UPDATE or DELETE (``Session.execute`` is typed as a
    plain Result, but DML returns a CursorResult)."""
    return cast(CursorResult[Any], result).rowcount


def _json_dumps(value: Any) -> str:
    # orjson is several times faster on the write path; what it refuses (a
    # lone surrogate, an integer past 64 bits, a key that is not text) takes
    # the standard library's path, as before.
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def make_engine(url: str, *, pool_size: int = 20) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            json_serializer=_json_dumps,
            json_deserializer=orjson.loads,
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
    )


# How long a SQLite transaction waits for another one's write lock.
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _configure_sqlite(engine: Engine) -> None:
    """WAL for concurrent readers, and BEGIN IMMEDIATE for writers.

    A deferred transaction that reads and then writes can fail at once with
    SQLITE_BUSY when another process wrote in between (busy_timeout does not
    apply to that upgrade), so write transactions take the write lock up front.
    See https://www.sqlite.org/lang_transaction.html.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before it returns, so an acknowledged
        # impact survives power loss (NORMAL in WAL mode only survives a
        # process crash). Group commit (impacts/writer.py) pays one fsync per
        # batch instead of one per impact. docs/reliability.md has the promise.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Issue 4 (bench/): checkpoints run in the background (_Checkpointer);
        # the automatic one, which makes the committing request copy and sync
        # the WAL itself, is only a backstop here. Memory-mapped reads (up to
        # SQLite's 2 GiB limit: a database of a few million impacts is larger than
        # 256 MiB, and pages past the map cost a read() each) and a 32 MiB page
        # cache keep the index pages of large accounts at hand.
        cursor.execute("PRAGMA wal_autocheckpoint=20000")
        cursor.execute("PRAGMA mmap_size=2147418112")
        cursor.execute("PRAGMA cache_size=-32768")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("openimpact_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


# A check that each transaction of the current request runs before its work.
# It lives in a context variable because a request is one asyncio task (and
# anyio copies the context into the worker thread on PostgreSQL), so a check
# set while handling one request can never reach another.
_guard: ContextVar[Callable[[Session], None] | None] = ContextVar(
    "openimpact_transaction_guard", default=None
)


def guard_transactions(check: Callable[[Session], None]) -> None:
    """Run ``check(session)`` first in every transaction that the current
    request opens through :meth:`Database.run`; raising refuses the request and
    rolls the transaction back. auth uses it to confirm a cached API key in the
    request's own transaction instead of a transaction of its own."""
    _guard.set(check)


class _Checkpointer:
    """Copies the SQLite WAL into the database file from a thread of its own.

    With automatic checkpoints, the commit that fills the WAL copies and
    syncs it before its request can answer: 2 to 50 ms on the bench machine,
    and a third of the average commit. A passive checkpoint from another
    connection blocks neither readers nor writers
    (https://www.sqlite.org/wal.html#ckpt), and sqlite3 releases the GIL
    while it runs. Several workers may each run one: a checkpoint that finds
    another one running just reports busy and tries again next time.

    Every 0.1 s: the less a checkpoint has to copy, the shorter its sync of
    the database file, which shares the disk with the commits' syncs. Paced
    at 2,800 POSTs/s after three full-speed rounds, p99 was 19 to 22 ms
    against 21 to 25 every 0.2 s, at the same full speed; every 0.05 s gave
    the same p99 and 3 to 9 % less full speed.
    """

    def __init__(self, path: str, interval: float = 0.1) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(path, interval), name="sqlite-checkpoint", daemon=True
        )
        self._thread.start()

    def _run(self, path: str, interval: float) -> None:
        conn = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # busy or locked: the next round catches up
                    log.debug("background checkpoint skipped: %s", exc)
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


# How long a thread that let go of the SQLite write turn waits before it may
# take it again (see _ThreadTurns.__exit__).
_GIVE_WAY_SECONDS = 0.001


def write_turn_path(database: str) -> str:
    """The file whose ``flock`` gives SQLite writers their turns (see
    impacts/writer.py's _WriteTurn and :class:`_ThreadTurns`)."""
    return f"{database}-writer.lock"


class _ThreadTurns:
    """Turns at writing one SQLite file for write transactions run off the
    event loop (the background worker's jobs, webhook deliveries, the
    ``openimpact worker`` process): an exclusive ``flock`` on the same file as
    the impact writer's, through a descriptor of its own, so that the two
    exclude each other within a process as across processes. The impact
    writer then waits for a worker's transaction off the event loop, woken as
    soon as it ends, instead of polling for SQLite's lock with sleeps of up to
    100 ms. Threads of one process take turns on a lock first (a flock is
    shared by every thread using the descriptor); a thread already holding
    the turn (a nested transaction) keeps it."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._lock = threading.RLock()
        self._depth = threading.local()

    def __enter__(self) -> None:
        self._lock.acquire()
        depth = getattr(self._depth, "n", 0)
        if depth == 0:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._lock.release()
                raise
        self._depth.n = depth + 1

    def __exit__(self, *_: object) -> None:
        self._depth.n -= 1
        if self._depth.n == 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            # Give way: a flock is not fair, and a job that writes chunk after
            # chunk would take the turn again before a waiting impact writer
            # woke, holding it for the whole job. Sleeping without the GIL
            # lets the kernel hand the turn to the waiter first, so a batch
            # waits for one chunk at most.
            time.sleep(_GIVE_WAY_SECONDS)
        self._lock.release()

    def close(self) -> None:
        os.close(self._fd)


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Database:
    """One engine and the request boundary around it."""

    def __init__(self, url: str, *, pool_size: int = 20) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        path = self.engine.url.database if self.is_sqlite else None
        on_disk = bool(path) and path != ":memory:"
        self._checkpointer = _Checkpointer(path) if on_disk and path else None
        self._turns = (
            _ThreadTurns(write_turn_path(path)) if on_disk and path and fcntl is not None else None
        )
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write_engine = self.engine.execution_options(openimpact_write=True)
        self._write = sessionmaker(self._write_engine, expire_on_commit=False)

    def connect(self, *, write: bool = False) -> Connection:
        """A connection of its own (the impact writer keeps a few)."""
        engine = self._write_engine if write else self.engine
        return engine.connect()

    def session(self, *, write: bool = False) -> Session:
        return (self._write if write else self._read)()

    def run_sync(self, fn: Callable[..., T], *args: Any, write: bool = False) -> T:
        # Off the event loop, a SQLite write waits for its turn (_ThreadTurns).
        # On the loop it must not: the impact writer, which holds the turn
        # across its commit, needs the loop to let go of it.
        turn = self._turns if write and self._turns is not None and not _on_event_loop() else None
        with turn or nullcontext():
            return self._run_sync(fn, *args, write=write)

    def _run_sync(self, fn: Callable[..., T], *args: Any, write: bool = False) -> T:
        guard = _guard.get()
        with self.session(write=write) as session, session.begin():
            if guard is not None:
                guard(session)
            return fn(session, *args)

    async def run(self, fn: Callable[..., T], *args: Any, write: bool = False) -> T:
        if self.is_sqlite:
            return self.run_sync(fn, *args, write=write)
        return await anyio.to_thread.run_sync(lambda: self.run_sync(fn, *args, write=write))

    def settings_warnings(self) -> list[str]:
        """What in the database server's own settings will slow this one down.

        PostgreSQL's planner chooses indexes from the statistics that
        autovacuum keeps; with it off, a growing table keeps the statistics of
        its first ANALYZE (or none). Lookups of customers by email and the
        worker's queues seek their indexes whatever the statistics, but other
        queries (a purge of many expired keys, filtered lists) may then read
        far more than they need."""
        if self.is_sqlite:
            return []
        with self.engine.connect() as conn:
            autovacuum = conn.execute(text("SHOW autovacuum")).scalar()
        if autovacuum == "off":
            return [
                "PostgreSQL runs with autovacuum off: without fresh planner statistics, "
                "lookups slow down as tables grow; turn it on, or run "
                "`vacuumdb --analyze-only` regularly"
            ]
        return []

    def dispose(self) -> None:
        if self._turns is not None:
            self._turns.close()
            self._turns = None
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        self.engine.dispose()
