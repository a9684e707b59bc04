"""Group commit: concurrent impact writes of a process share one transaction.

A request hands its impact to :meth:`Writer.submit` and waits. The writer takes
what is pending (a batch holds at most ``max_batch``; while requests keep
coming, that is while a batch is being written or one was a moment ago, the
first item waits at most ``max_wait_ms`` for others), writes it with
:func:`~openimpact.impacts.batch.write_batch` in one transaction (on SQLite
inline but for its COMMIT, or whole on the writer's thread when it had to
wait for SQLite's lock; on PostgreSQL on a worker thread), and answers each
request only after that transaction committed. On SQLite that is one fsync
(``synchronous=FULL``) for the whole batch; on PostgreSQL two round trips,
so each ledger row lock is held for the batch's last one only.

While one batch is being written the next gathers, so a busy server writes
large batches and a quiet one small ones. One batch is written at a time by
default (``in_flight``): a batch's cost is mostly fixed (on PostgreSQL, its
round trips and statements; on SQLite, its sync), so one large batch is
cheaper than two small ones, and the event loop meanwhile reads the next
requests (on SQLite too, while the previous batch's COMMIT syncs on a worker
thread).

Failures stay as small as they can:

- an item refused before the write (a revoked key, a used Idempotency-Key with
  another body, a cause the account has not configured) gets its own error;
- an Idempotency-Key stored by another process during the batch rolls the
  batch back and writes it again; the lookup then replays;
- any other error of the batch writes its items again one by one, so only the
  item that fails gets the error;
- a database that fails the transaction itself (a lost connection, a full
  disk) fails the batch's requests with a 503: nothing was written, and a
  retry with the same Idempotency-Key is safe.

Two requests of one batch never share an Idempotency-Key: the later one waits
for the next batch, where it replays the first one's answer.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import TypeVar

import anyio.to_thread
from sqlalchemy import Connection, RootTransaction
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from openimpact import sql
from openimpact.db import SQLITE_BUSY_TIMEOUT_MS, Database, write_turn_path
from openimpact.errors import OpenImpactError, Unavailable
from openimpact.impacts.batch import IdempotencyRace, Outcome, Pending, Result, write_batch
from openimpact.outbox.service import Events
from openimpact.timeutil import now_ms

try:
    import fcntl
except ImportError:  # not on Windows: SQLite's own wait for its lock applies
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
T = TypeVar("T")

_RACE_RETRIES = 5
# How long the first request of a batch waits for others while requests keep
# coming, by default (``OPENIMPACT_WRITER_MAX_WAIT_MS``): on the bench
# machine, 1 ms wrote more than 0.2 or 0.5 on SQLite, and as much as 2 or 4.
DEFAULT_WAIT_MS = 1.0
_UNAVAILABLE = "the database could not write this request; nothing was recorded, retry it"


class _Failed:
    """An unexpected error of one item (a bug, or data the database refuses)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _WriteTurn:
    """Turns at writing one SQLite file, among the writers of every process.

    SQLite's own wait for its write lock (busy_timeout) polls with sleeps of
    up to 100 ms, and the writer runs its batch inline, so a process waiting
    for another one's COMMIT would stall its whole event loop. An exclusive
    ``flock`` on a file beside the database (``<database>-writer.lock``)
    queues the processes instead: taken at once when free, and otherwise
    waited for on a worker thread, which wakes as soon as the other process
    lets go. SQLite's own locks are untouched (they are POSIX record locks,
    which on Linux are independent of flock).

    A flock belongs to the open file, not to a task, so within the process
    an asyncio lock comes first (``writer_in_flight`` above 1 lets several
    batches ask at once).
    """

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._local = asyncio.Lock()

    async def __aenter__(self) -> None:
        await self._local.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        except BaseException:
            self._local.release()
            raise
        waiting = asyncio.get_running_loop().run_in_executor(
            None, fcntl.flock, self._fd, fcntl.LOCK_EX
        )
        try:
            await asyncio.shield(waiting)
        except BaseException:
            # Cancelled while the thread waits: the turn is let go, and the
            # process's own lock freed, only once the thread has it.
            waiting.add_done_callback(self._abandoned)
            raise

    def _abandoned(self, waited: asyncio.Future[None]) -> None:
        if not waited.cancelled() and waited.exception() is None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._local.release()

    async def __aexit__(self, *_: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._local.release()

    def close(self) -> None:
        os.close(self._fd)


def _write_turn(db: Database) -> _WriteTurn | None:
    path = db.engine.url.database
    if not db.is_sqlite or fcntl is None or not path or path == ":memory:":
        return None
    return _WriteTurn(write_turn_path(path))


class Writer:
    def __init__(
        self,
        db: Database,
        *,
        max_batch: int = 256,
        max_wait_ms: float | None = None,
        in_flight: int = 1,
        events: Events = Events(),
    ) -> None:
        self.db = db
        self.events = events
        self.max_batch = max_batch
        self.max_wait = (DEFAULT_WAIT_MS if max_wait_ms is None else max_wait_ms) / 1000
        self.in_flight = in_flight
        # When the last batch was written (the event loop's clock): requests
        # that follow it closely are a stream, worth gathering.
        self._last_written = float("-inf")

        self._queue: deque[tuple[Pending, asyncio.Future[Result | _Failed]]] = deque()
        self._ready = asyncio.Event()
        self._slots = asyncio.Semaphore(self.in_flight)
        self._writing: set[asyncio.Task[None]] = set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._idle: list[Connection] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._turn: _WriteTurn | None = None
        self._committer: ThreadPoolExecutor | None = None
        # Figures for tests and the bench: batches written and items in them.
        self.batches = 0
        self.items = 0

    def start(self) -> None:
        self._turn = _write_turn(self.db)
        if self.db.is_sqlite:
            self._committer = ThreadPoolExecutor(1, thread_name_prefix="impact-writer")
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="impact-writer")

    async def close(self) -> None:
        """Write what is pending, then stop."""
        self._closing = True
        self._ready.set()
        if self._task is not None:
            await self._task
        if self._writing:
            await asyncio.gather(*self._writing, return_exceptions=True)
        while self._idle:
            self._idle.pop().close()
        if self._turn is not None:
            self._turn.close()
            self._turn = None
        if self._committer is not None:
            self._committer.shutdown()
            self._committer = None

    async def submit(self, item: Pending) -> Outcome:
        """Write one impact with whatever else is pending; its answer, or its
        error raised."""
        if self._closing or self._task is None or self._loop is None:
            raise Unavailable("the server is shutting down; retry the request")
        if asyncio.get_running_loop() is not self._loop:
            # An application driven from another event loop than the one it
            # started on (an in-process client in tests): hand over to ours.
            handed = asyncio.run_coroutine_threadsafe(self.submit(item), self._loop)
            return await asyncio.wrap_future(handed)
        future: asyncio.Future[Result | _Failed] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._ready.set()
        # A client that disconnects cancels its request, not the write: the
        # impact is recorded and a retry with its Idempotency-Key replays it.
        result = await asyncio.shield(future)
        if isinstance(result, _Failed):
            raise result.error
        if isinstance(result, OpenImpactError):
            raise result
        return result

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            if not self._queue:
                if self._closing:
                    return
                self._ready.clear()
                continue
            await self._slots.acquire()
            loop = asyncio.get_running_loop()
            if (
                (self._writing or loop.time() - self._last_written < self.max_wait)
                and len(self._queue) < self.max_batch
                and self.max_wait > 0
                and not self._closing
            ):
                # A batch is being written or was just now, so requests are
                # arriving: those the event loop is reading get to join this
                # one. A lone request on an idle writer is written at once.
                await asyncio.sleep(self.max_wait)
            batch = self._take()
            task = asyncio.create_task(self._write(batch))
            self._writing.add(task)
            task.add_done_callback(self._writing.discard)

    def _take(self) -> list[tuple[Pending, asyncio.Future[Result | _Failed]]]:
        batch: list[tuple[Pending, asyncio.Future[Result | _Failed]]] = []
        held: list[tuple[Pending, asyncio.Future[Result | _Failed]]] = []
        slots: set[tuple[int, str, str]] = set()
        while self._queue and len(batch) < self.max_batch:
            entry = self._queue.popleft()
            slot = entry[0].idempotency_slot
            if slot is not None:
                if slot in slots:
                    held.append(entry)
                    continue
                slots.add(slot)
            batch.append(entry)
        self._queue.extendleft(reversed(held))
        if not self._queue:
            self._ready.clear()
        return batch

    async def _write(self, batch: list[tuple[Pending, asyncio.Future[Result | _Failed]]]) -> None:
        try:
            items = [item for item, _ in batch]
            try:
                results = await self._execute(items)
            except Exception as exc:  # fail the batch, not the writer
                results = [_Failed(exc)] * len(batch)
            except BaseException:  # cancelled: nobody may wait forever
                for _, future in batch:
                    if not future.done():
                        future.set_result(Unavailable(_UNAVAILABLE, headers={"Retry-After": "1"}))
                raise
            self.batches += 1
            self.items += len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            self._last_written = asyncio.get_running_loop().time()
            self._slots.release()
            self._ready.set()

    async def _execute(self, items: list[Pending]) -> list[Result | _Failed]:
        for _ in range(_RACE_RETRIES):
            try:
                if self.db.is_sqlite:
                    async with self._turn or nullcontext():
                        return await self._attempt_sqlite(items)
                return await anyio.to_thread.run_sync(self._attempt, items)
            except IdempotencyRace:
                continue
            except OperationalError as exc:
                log.warning("impact batch of %d failed: %s", len(items), exc)
                return [Unavailable(_UNAVAILABLE, headers={"Retry-After": "1"})] * len(items)
            except DBAPIError as exc:
                if exc.connection_invalidated:
                    log.warning("impact batch of %d lost its connection: %s", len(items), exc)
                    return [Unavailable(_UNAVAILABLE, headers={"Retry-After": "1"})] * len(items)
                return await self._one_by_one(items, exc)
            except Exception as exc:
                return await self._one_by_one(items, exc)
        return [Unavailable(_UNAVAILABLE, headers={"Retry-After": "1"})] * len(items)

    async def _attempt_sqlite(self, items: list[Pending]) -> list[Result | _Failed]:
        """The transaction on SQLite: its statements inline, since each takes
        microseconds and a thread would contend with the event loop for the
        GIL at every one of them; its COMMIT, the batch's fsync
        (``synchronous=FULL``), on a worker thread, since sqlite3 lets go of
        the GIL while it syncs and the event loop meanwhile reads the next
        requests. The write turn is held until the commit returned, and the
        commit is not abandoned when the batch's task is cancelled: it either
        happened or it did not.

        SQLite's write lock is usually free (the write turn keeps this
        process's and the other processes' writers apart, and the workers'
        transactions off the event loop), so BEGIN IMMEDIATE takes it inline.
        When a transaction outside the turn holds it (a request's own write,
        run inline by this or another process's event loop), the whole batch
        is written on the writer's thread instead: the wait for the lock is
        there, and once the thread has the lock it needs nothing of the event
        loop, which meanwhile may itself be waiting for that lock inside
        SQLite for a request's write."""
        with self._checked_out() as conn:
            transaction = self._begin_at_once(conn)
            if transaction is None:
                return await self._on_own_thread(lambda: self._transaction(conn, items))
            try:
                results = self._batch(conn, items)
            except BaseException:
                transaction.rollback()
                raise
            await self._on_own_thread(transaction.commit)
            return results

    def _batch(self, conn: Connection, items: list[Pending]) -> list[Result | _Failed]:
        with Session(bind=conn, expire_on_commit=False) as session:
            return list(write_batch(session, items, now=now_ms(), events=self.events, commit=True))

    def _transaction(self, conn: Connection, items: list[Pending]) -> list[Result | _Failed]:
        """BEGIN IMMEDIATE (waiting for the lock), the batch, COMMIT."""
        with conn.begin():
            return self._batch(conn, items)

    @staticmethod
    def _begin_at_once(conn: Connection) -> RootTransaction | None:
        """BEGIN IMMEDIATE if SQLite's write lock is free now, else None."""
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute("PRAGMA busy_timeout=0")
        try:
            return conn.begin()
        except OperationalError as exc:
            if getattr(exc.orig, "sqlite_errorname", None) != "SQLITE_BUSY":
                raise
            return None
        finally:
            driver.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")

    async def _on_own_thread(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the writer's own thread, started before this coroutine
        yields. A COMMIT must be: while the batch holds SQLite's write lock, a
        write that the event loop runs inline waits for that lock inside
        SQLite (blocking the loop), and so must never wait for the loop to
        start the commit; for the same reason, a batch that had to wait for
        the lock runs whole on the thread. The thread is the writer's alone,
        so no other work (such as writes that wait for this very lock on a
        shared pool's threads) queues before it. Cancelled, it waits for ``fn`` to end
        before the caller lets go of the connection."""
        assert self._committer is not None
        done = asyncio.get_running_loop().run_in_executor(self._committer, fn)
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            await asyncio.wait({done})
            raise

    @contextmanager
    def _checked_out(self) -> Iterator[Connection]:
        """One of the writer's own connections for a batch, kept for the next
        one unless the database dropped it or failed the transaction itself
        (an error of the batch rolled back leaves it fine)."""
        try:
            conn = self._idle.pop()  # another thread may take the last one first
        except IndexError:
            conn = self.db.connect(write=True)
        keep = False
        try:
            yield conn
            keep = True
        except DBAPIError as exc:
            keep = not (exc.connection_invalidated or isinstance(exc, OperationalError))
            raise
        except Exception:
            keep = True
            raise
        finally:
            if keep and not conn.invalidated:
                self._idle.append(conn)
            else:
                conn.close()

    def _attempt(self, items: list[Pending]) -> list[Result | _Failed]:
        """The whole transaction on PostgreSQL, on a worker thread, on one of
        the writer's own connections: kept from batch to batch, they skip the
        pool's liveness ping, a round trip per batch. A connection the
        database dropped raises here (the batch answers 503) and is replaced
        by a fresh one for the next batch.

        Measured against the same transaction awaited on the event loop
        (psycopg's asyncio connection through SQLAlchemy's ``run_sync``), the
        thread wrote as much with one worker process and 6 to 12% more with
        two, at the same p99."""
        with (
            self._checked_out() as conn,
            conn.begin(),
            sql.pg_own_transaction(conn),
            Session(bind=conn, expire_on_commit=False) as session,
        ):
            return list(write_batch(session, items, now=now_ms(), events=self.events, commit=True))

    async def _one_by_one(self, items: list[Pending], exc: BaseException) -> list[Result | _Failed]:
        if len(items) == 1:
            log.error("impact write failed", exc_info=exc)
            return [_Failed(exc)]
        out: list[Result | _Failed] = []
        for item in items:
            out.extend(await self._execute([item]))
        return out
