"""Group commit (impacts/batch.py, impacts/writer.py): one transaction for
many impact writes, each with its own answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from openimpact.accounts.models import ApiKey, Ledger
from openimpact.app import create_app
from openimpact.auth import Caller
from openimpact.customers.models import Customer
from openimpact.errors import IdempotencyConflict, KeyError_, Unavailable, ValidationFailed
from openimpact.impacts import batch
from openimpact.impacts.batch import NewImpact, Outcome, Pending, request_hash, write_batch
from openimpact.impacts.models import DailyImpact, IdempotencyRecord, Impact
from openimpact.impacts.writer import Writer
from openimpact.timeutil import now_ms, parse_iso_ms
from tests.conftest import TestDatabase
from tests.factories import AccountKeys, Api, make_account


def _caller(db: Any, keys: AccountKeys, env: str = "production") -> Caller:
    from openimpact.accounts.service import hash_key
    from openimpact.auth import _lookup

    caller = db.run_sync(_lookup, hash_key(keys.key(env)))
    assert caller is not None
    return caller


def _tree(amount: int, **extra: Any) -> NewImpact:
    fields: dict[str, Any] = {
        "impact_type": "tree_planted",
        "amount": amount,
        "category": None,
        "customer_email": None,
        "customer_name": None,
        "notify": None,
        "metadata": None,
    }
    fields.update(extra)
    return NewImpact(**fields)


def _count(db: Any, model: Any, account_id: int) -> int:
    return db.run_sync(
        lambda s: s.scalar(
            select(func.count()).select_from(model).where(model.account_id == account_id)
        )
    )


@pytest.fixture
def db(client: TestClient) -> Any:
    return client.app.state.db  # type: ignore[attr-defined]


class TestWriteBatch:
    def test_good_and_refused_items_of_one_batch(self, db: Any) -> None:
        shop = make_account(db, causes=["oceans", "schools"])
        other = make_account(db)
        me = _caller(db, shop)
        them = _caller(db, other)
        revoked = _caller(db, other, "sandbox")
        db.run_sync(
            lambda s: s.execute(
                ApiKey.__table__.update()
                .where(ApiKey.key_hash == revoked.key_hash)
                .values(revoked_ms=now_ms())
            ),
            write=True,
        )
        used = Pending(me, _tree(1), "used-key", request_hash("/v1/plant_tree", {"amount": 1}))
        db.run_sync(lambda s: write_batch(s, [used], now=now_ms()), write=True)

        items = [
            Pending(me, _tree(5)),
            Pending(me, _tree(1), "used-key", used.req_hash),  # a replay
            Pending(me, _tree(2), "used-key", "another body"),  # 409
            Pending(
                me,
                NewImpact("money_donated", 300, "wildlife", None, None, None, None),
            ),  # a cause the account has not configured
            Pending(revoked, _tree(7), confirm_key=True),  # revoked a moment ago
            Pending(them, _tree(11, customer_email="Ana@Example.com", customer_name="Ana")),
            Pending(me, NewImpact("money_donated", 250, None, None, None, None, None)),
            Pending(them, _tree(13, customer_email="ana@example.com")),
            Pending(me, _tree(17)),
        ]
        before = now_ms()
        results = db.run_sync(lambda s: write_batch(s, items, now=before), write=True)

        assert isinstance(results[0], Outcome) and not results[0].replayed
        assert isinstance(results[1], Outcome) and results[1].replayed
        assert isinstance(results[2], IdempotencyConflict)
        assert isinstance(results[3], ValidationFailed)
        assert "wildlife" in results[3].message and "oceans, schools" in results[3].message
        assert isinstance(results[4], KeyError_)
        written = [r for r in results if isinstance(r, Outcome) and not r.replayed]
        assert len(written) == 5

        # time_utc: unique and increasing per account in the order of the batch.
        mine = [parse_iso_ms(results[i].body["time_utc"]) for i in (0, 6, 8)]  # type: ignore[union-attr]
        assert mine == sorted(mine) and len(set(mine)) == 3 and mine[0] >= before
        theirs = [parse_iso_ms(results[i].body["time_utc"]) for i in (5, 7)]  # type: ignore[union-attr]
        assert theirs[0] < theirs[1]

        # One customer per email, whatever its case; the answer shows the name.
        assert results[5].body["customer"] == results[7].body["customer"]  # type: ignore[union-attr]
        assert results[7].body["customer"]["customer_name"] == "Ana"  # type: ignore[union-attr]
        assert _count(db, Customer, them.account_id) == 1
        # The donation without a category funds the account's first cause.
        cause = db.run_sync(
            lambda s: s.scalar(
                select(Impact.cause).where(
                    Impact.account_id == me.account_id, Impact.impact_type == "money_donated"
                )
            )
        )
        assert cause == "oceans"

        # Totals, daily rows and records agree.
        ledger = db.run_sync(lambda s: s.get(Ledger, (me.account_id, "production")))
        assert ledger.user_tree_planted == 1 + 5 + 17
        assert ledger.user_money_donated == 250
        daily = db.run_sync(
            lambda s: s.scalars(
                select(DailyImpact).where(DailyImpact.account_id == me.account_id)
            ).all()
        )
        assert sum(d.tree_planted for d in daily) == 23
        assert _count(db, Impact, me.account_id) == 4
        theirs_ledger = db.run_sync(lambda s: s.get(Ledger, (them.account_id, "production")))
        assert theirs_ledger.customer_tree_planted == 24

    def test_a_batch_of_refused_items_leaves_totals_as_the_records_say(self, db: Any) -> None:
        """Every item refused (on PostgreSQL the ledger rows were updated for
        them in the reads' round trip, and get it back), then one written
        after them: totals equal the records, and time_utc keeps increasing."""
        shop = make_account(db, causes=["oceans"])
        me = _caller(db, shop)
        sandbox = _caller(db, shop, "sandbox")
        used = Pending(me, _tree(3), "k", request_hash("/v1/plant_tree", {"amount": 3}))
        first = db.run_sync(lambda s: write_batch(s, [used], now=now_ms()), write=True)[0]
        refused = [
            Pending(me, _tree(3), "k", used.req_hash),  # a replay
            Pending(me, _tree(9, customer_email="x@example.com"), "k", "other"),  # 409
            Pending(me, NewImpact("money_donated", 500, "wildlife", None, None, None, None)),
            Pending(sandbox, NewImpact("money_donated", 70, "schools", None, None, None, None)),
        ]
        results = db.run_sync(lambda s: write_batch(s, refused, now=now_ms()), write=True)
        assert [type(r).__name__ for r in results] == [
            "Outcome", "IdempotencyConflict", "ValidationFailed", "ValidationFailed",
        ]  # fmt: skip
        after = db.run_sync(
            lambda s: write_batch(s, [Pending(me, _tree(4))], now=now_ms()), write=True
        )
        assert parse_iso_ms(after[0].body["time_utc"]) > parse_iso_ms(first.body["time_utc"])
        for env, trees in (("production", 7), ("sandbox", 0)):
            ledger = db.run_sync(lambda s, env=env: s.get(Ledger, (me.account_id, env)))
            amounts = {c: getattr(ledger, c) for c in batch.LEDGER_COLUMNS}
            assert amounts == {**dict.fromkeys(batch.LEDGER_COLUMNS, 0), "user_tree_planted": trees}
        assert _count(db, Customer, me.account_id) == 0

    def test_names_follow_the_order_of_the_batch(self, db: Any) -> None:
        me = _caller(db, make_account(db))
        first = Pending(me, _tree(1, customer_email="bo@example.com", customer_name="Bo"))
        db.run_sync(lambda s: write_batch(s, [first], now=now_ms()), write=True)
        items = [
            Pending(me, _tree(1, customer_email="bo@example.com")),
            Pending(me, _tree(1, customer_email="BO@example.com", customer_name="Robert")),
            Pending(me, _tree(1, customer_email="bo@example.com")),
        ]
        results = db.run_sync(lambda s: write_batch(s, items, now=now_ms()), write=True)
        names = [r.body["customer"].get("customer_name") for r in results]
        assert names == ["Bo", "Robert", "Robert"]
        stored = db.run_sync(
            lambda s: s.scalar(select(Customer.name).where(Customer.account_id == me.account_id))
        )
        assert stored == "Robert"

    def test_a_burst_runs_ahead_of_the_clock_without_reusing_a_millisecond(self, db: Any) -> None:
        me = _caller(db, make_account(db))
        now = now_ms()
        results = db.run_sync(
            lambda s: write_batch(s, [Pending(me, _tree(1)) for _ in range(50)], now=now),
            write=True,
        )
        times = [parse_iso_ms(r.body["time_utc"]) for r in results]
        assert times == list(range(now, now + 50))
        # A later batch with an earlier clock still starts after the last one.
        again = db.run_sync(lambda s: write_batch(s, [Pending(me, _tree(1))], now=now), write=True)
        assert parse_iso_ms(again[0].body["time_utc"]) == now + 50


def _burst(
    app: Any, requests: list[tuple[str, dict[str, Any], dict[str, str]]]
) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            return await asyncio.gather(
                *(http.post(path, json=body, headers=headers) for path, body, headers in requests)
            )

    return asyncio.run(go())


class TestWriter:
    def test_concurrent_requests_share_transactions(self, api: Api) -> None:
        shops = [api.account() for _ in range(3)]
        requests = [
            ("/v1/plant_tree", {"amount": i + 1}, {"x-api-key": shops[i % 3].production_key})
            for i in range(60)
        ]
        writer: Writer = api.client.app.state.writer  # type: ignore[attr-defined]
        batches, items = writer.batches, writer.items
        responses = _burst(api.client.app, requests)
        assert [r.status_code for r in responses] == [200] * 60
        assert writer.items - items == 60
        assert writer.batches - batches < 60, "no two requests shared a batch"
        for n, shop in enumerate(shops):
            me = api.as_(shop)
            records = me.walk("/v1/records", "user_records")
            times = [r["time_utc"] for r in records]
            assert len(set(times)) == 20
            expected = sum(i + 1 for i in range(60) if i % 3 == n)
            assert me.get("/v1/impact").json()["tree_planted"] == expected
            assert sum(r["tree_planted"] for r in records) == expected

    def test_one_key_twice_in_a_burst_replays_across_batches(self, api: Api) -> None:
        me = api.as_(api.account())
        headers = {"x-api-key": me.key, "Idempotency-Key": "order-1"}
        responses = _burst(
            api.client.app,
            [("/v1/plant_tree", {"amount": 3}, headers)] * 5
            + [("/v1/plant_tree", {"amount": 4}, headers)],
        )
        assert [r.status_code for r in responses[:5]] == [200] * 5
        assert responses[5].status_code == 409
        assert len({r.json()["time_utc"] for r in responses[:5]}) == 1
        assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 4
        assert me.get("/v1/impact").json()["tree_planted"] == 3

    def test_revoked_key_fails_alone(self, api: Api) -> None:
        good = api.as_(api.account())
        gone = api.as_(api.account())
        assert gone.post("/v1/plant_tree", {"amount": 1}).status_code == 200  # cached now
        api.db.run_sync(
            lambda s: s.execute(
                ApiKey.__table__.update()
                .where(ApiKey.prefix == gone.key[:16])
                .values(revoked_ms=now_ms())
            ),
            write=True,
        )
        responses = _burst(
            api.client.app,
            [("/v1/plant_tree", {"amount": 2}, {"x-api-key": good.key})] * 4
            + [("/v1/plant_tree", {"amount": 2}, {"x-api-key": gone.key})],
        )
        assert [r.status_code for r in responses] == [200, 200, 200, 200, 401]
        assert responses[4].json()["type"] == "key_error"
        assert good.get("/v1/impact").json()["tree_planted"] == 8


class _Broken:
    """A database whose transactions fail as a lost connection or a full disk do."""

    is_sqlite = True

    def connect(self, **_: Any) -> Any:
        raise OperationalError("BEGIN", {}, Exception("disk I/O error"))


@pytest.fixture
def writer_app(database: TestDatabase) -> Iterator[TestClient]:
    with TestClient(create_app(database.settings())) as client:
        yield client


class TestFailures:
    def test_a_failing_item_fails_alone(self, writer_app: TestClient) -> None:
        db = writer_app.app.state.db  # type: ignore[attr-defined]
        me = _caller(db, make_account(db))
        # An amount no database column takes: the batch fails, then each item
        # is written alone and only this one fails.
        items = [Pending(me, _tree(1)), Pending(me, _tree(2**70)), Pending(me, _tree(3))]
        writer = Writer(db)

        async def go() -> list[Any]:
            writer.start()
            try:
                return await asyncio.gather(
                    *(writer.submit(i) for i in items), return_exceptions=True
                )
            finally:
                await writer.close()

        results = asyncio.run(go())
        assert isinstance(results[0], Outcome) and isinstance(results[2], Outcome)
        assert isinstance(results[1], Exception) and not isinstance(results[1], Unavailable)
        assert _count(db, Impact, me.account_id) == 2

    def test_a_failed_batch_answers_503_and_a_retry_is_safe(self, writer_app: TestClient) -> None:
        app: Any = writer_app.app
        keys = make_account(app.state.db)
        real = app.state.writer.db
        app.state.writer._idle.clear()  # the next batch asks for a connection
        app.state.writer.db = _Broken()
        try:
            failed = writer_app.post(
                "/v1/plant_tree",
                json={"amount": 6},
                headers={"x-api-key": keys.production_key, "Idempotency-Key": "k-503"},
            )
        finally:
            app.state.writer.db = real
        assert failed.status_code == 503
        assert failed.json()["type"] == "unavailable"
        assert failed.headers["retry-after"] == "1"
        me = _caller(real, keys)
        assert _count(real, Impact, me.account_id) == 0
        assert _count(real, IdempotencyRecord, me.account_id) == 0

        retry = writer_app.post(
            "/v1/plant_tree",
            json={"amount": 6},
            headers={"x-api-key": keys.production_key, "Idempotency-Key": "k-503"},
        )
        assert retry.status_code == 200 and "idempotent-replayed" not in retry.headers
        assert _count(real, Impact, me.account_id) == 1

    def test_a_key_stored_by_another_process_mid_batch_replays(
        self, writer_app: TestClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        db = writer_app.app.state.db  # type: ignore[attr-defined]
        me = _caller(db, make_account(db))
        req_hash = request_hash("/v1/plant_tree", {"amount": 8})
        # Another worker commits the key between this batch's lookup and its
        # insert: the first attempt's lookup misses it, the retry replays it.
        theirs = db.run_sync(
            lambda s: write_batch(s, [Pending(me, _tree(8), "k-race", req_hash)], now=now_ms()),
            write=True,
        )[0]
        real_replay = batch._replay
        calls = []

        def blind_once(session: Any, items: Any, results: Any) -> None:
            calls.append(1)
            if len(calls) > 1:
                real_replay(session, items, results)

        monkeypatch.setattr(batch, "_replay", blind_once)
        writer = Writer(db)
        items = [Pending(me, _tree(8), "k-race", req_hash), Pending(me, _tree(1))]

        async def go() -> list[Any]:
            writer.start()
            try:
                return list(await asyncio.gather(*(writer.submit(i) for i in items)))
            finally:
                await writer.close()

        mine, other = asyncio.run(go())
        assert len(calls) == 2
        assert mine.replayed and mine.body == theirs.body
        assert not other.replayed
        assert _count(db, Impact, me.account_id) == 2
        stored = db.run_sync(
            lambda s: s.scalar(
                select(IdempotencyRecord.response_body).where(
                    IdempotencyRecord.account_id == me.account_id
                )
            )
        )
        assert json.loads(stored) == theirs.body


def test_writes_that_follow_a_batch_closely_are_gathered_and_a_lone_one_is_not(
    writer_app: TestClient,
) -> None:
    """A write on an idle writer goes at once; one that comes a moment after a
    batch waits (up to max_wait_ms) for others to join it."""
    db = writer_app.app.state.db  # type: ignore[attr-defined]
    me = _caller(db, make_account(db))
    writer = Writer(db, max_wait_ms=500)

    async def go() -> list[tuple[int, int]]:
        writer.start()
        counts = []
        try:
            lone = asyncio.ensure_future(writer.submit(Pending(me, _tree(1))))
            await asyncio.sleep(0.05)
            late = asyncio.ensure_future(writer.submit(Pending(me, _tree(2))))
            await lone
            # The lone write went without waiting: late is not in its batch.
            counts.append((writer.batches, writer.items))
            await asyncio.sleep(0.05)  # late waits, since it followed a batch
            joins = asyncio.ensure_future(writer.submit(Pending(me, _tree(3))))
            await asyncio.gather(late, joins)
            counts.append((writer.batches, writer.items))
        finally:
            await writer.close()
        return counts

    assert asyncio.run(go()) == [(1, 1), (2, 3)]
    assert _count(db, Impact, me.account_id) == 3


def test_a_dropped_connection_answers_503_once_then_recovers(
    postgresql_database: TestDatabase,
) -> None:
    """PostgreSQL ends the writer's connection (a restart, a failover, an
    operator's pg_terminate_backend): the batch on it answers 503, and the next
    one gets a fresh connection, with no restart of the server."""
    from sqlalchemy import text

    with TestClient(create_app(postgresql_database.settings())) as client:
        app: Any = client.app
        keys = make_account(app.state.db)
        headers = {"x-api-key": keys.production_key}
        assert client.post("/v1/plant_tree", json={"amount": 1}, headers=headers).status_code == 200
        (conn,) = app.state.writer._idle
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        conn.rollback()
        app.state.db.run_sync(
            lambda s: s.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}),
            write=True,
        )
        dropped = client.post(
            "/v1/plant_tree", json={"amount": 2}, headers={**headers, "Idempotency-Key": "k-drop"}
        )
        assert dropped.status_code == 503, dropped.text
        assert dropped.json()["type"] == "unavailable"
        again = client.post(
            "/v1/plant_tree", json={"amount": 2}, headers={**headers, "Idempotency-Key": "k-drop"}
        )
        assert again.status_code == 200
        assert "idempotent-replayed" not in again.headers
        total = client.get("/v1/impact", headers=headers).json()["tree_planted"]
        assert total == 3


async def _write_while_ticking(writer: Writer, item: Pending, started: Any) -> tuple[Any, int]:
    """Write ``item`` (``started()`` once the writer runs) while counting the
    event loop's 10 ms ticks: a loop stalled by the write would not tick."""
    writer.start()
    started()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        outcome = await writer.submit(item)
    finally:
        ticker.cancel()
        await writer.close()
    return outcome, ticks


def test_sqlite_writers_of_two_processes_take_turns_without_stalling_the_loop(
    sqlite_database: TestDatabase,
) -> None:
    """While another process holds the turn (its flock on the file beside the
    database), a batch waits off the event loop, and is written as soon as the
    turn is free."""
    import fcntl
    import os
    import threading

    from openimpact.db import Database
    from openimpact.impacts.writer import _WriteTurn

    db = Database(sqlite_database.url)
    me = _caller(db, make_account(db))
    path = db.engine.url.database
    assert path
    other = os.open(f"{path}-writer.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(other, fcntl.LOCK_EX)  # the other process's turn
    released = threading.Timer(0.3, fcntl.flock, (other, fcntl.LOCK_UN))
    writer = Writer(db)

    def started() -> None:
        assert isinstance(writer._turn, _WriteTurn)
        released.start()

    try:
        outcome, ticks = asyncio.run(_write_while_ticking(writer, Pending(me, _tree(4)), started))
    finally:
        released.cancel()
        os.close(other)
        db.dispose()
    assert isinstance(outcome, Outcome) and outcome.body["tree_planted"] == 4
    # The loop ran all along the 0.3 s wait (a stalled loop would not tick).
    assert ticks >= 15


def test_an_inline_sqlite_write_during_a_batchs_commit_waits_only_for_that_commit(
    sqlite_database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's COMMIT runs on the writer's thread while the batch holds
    SQLite's write lock. A write the event loop runs inline meanwhile (a cancel,
    a dashboard change) waits for that lock inside SQLite, blocking the loop:
    the commit must already be under way then, never waiting for the loop."""
    import time

    from openimpact.db import Database
    from openimpact.impacts import writer as writer_module

    db = Database(sqlite_database.url)
    me = _caller(db, make_account(db))
    writer = Writer(db)
    handed: list[float] = []
    original = writer_module.Writer._on_own_thread

    async def commit_then_write_inline(self: Writer, fn: Any) -> Any:
        pending = asyncio.ensure_future(original(self, fn))
        if fn.__name__ != "commit":
            return await pending
        await asyncio.sleep(0)  # the commit is handed over; the loop goes on
        # The loop now runs a write inline: it waits for the batch's lock.
        started = time.monotonic()
        db.run_sync(
            lambda s: s.execute(
                ApiKey.__table__.update().where(ApiKey.id == -1).values(revoked_ms=None)
            ),
            write=True,
        )
        handed.append(time.monotonic() - started)
        return await pending

    monkeypatch.setattr(writer_module.Writer, "_on_own_thread", commit_then_write_inline)

    async def go() -> list[Any]:
        writer.start()
        try:
            return await asyncio.gather(*(writer.submit(Pending(me, _tree(i))) for i in (1, 2, 3)))
        finally:
            await writer.close()

    try:
        outcomes = asyncio.run(asyncio.wait_for(go(), timeout=20))
    finally:
        db.dispose()
    assert [o.body["tree_planted"] for o in outcomes] == [1, 2, 3]
    assert handed, "no batch was committed"
    # It waited for a commit (milliseconds), not for SQLite's busy timeout (30 s).
    assert max(handed) < 10
    assert _count(db, Impact, me.account_id) == 3


def test_a_batch_waits_for_a_sqlite_write_lock_held_elsewhere_off_the_event_loop(
    sqlite_database: TestDatabase,
) -> None:
    """A transaction outside the writer (the background worker's, in a thread
    of the same process) holds SQLite's write lock: the batch waits for it on
    the writer's thread, not in SQLite's busy handler on the event loop, and is
    written as soon as the lock is free."""
    import threading

    from openimpact.db import Database

    db = Database(sqlite_database.url)
    me = _caller(db, make_account(db))
    other = db.connect(write=True)
    held = other.begin()  # BEGIN IMMEDIATE: the write lock
    released = threading.Timer(0.3, held.commit)
    writer = Writer(db)

    try:
        outcome, ticks = asyncio.run(
            _write_while_ticking(writer, Pending(me, _tree(6)), released.start)
        )
        # The writer's connections wait as every other one does again.
        (conn,) = writer._idle or [db.connect(write=True)]
        timeout = conn.connection.driver_connection.execute("PRAGMA busy_timeout").fetchone()
    finally:
        released.cancel()
        other.close()
        db.dispose()
    assert isinstance(outcome, Outcome) and outcome.body["tree_planted"] == 6
    assert ticks >= 15  # the loop ran all along the 0.3 s wait
    assert timeout == (30_000,)


def test_a_batch_that_waited_for_the_sqlite_write_lock_needs_nothing_of_the_event_loop(
    sqlite_database: TestDatabase,
) -> None:
    """When the writer's thread gets the lock a batch waited for, the event
    loop may be blocked already: a write it runs inline (a cancel, of this or
    another process) waits for that same lock inside SQLite. The batch is then
    written and committed on the thread, never waiting for the loop; waiting
    would hold the lock until SQLite's busy timeout (30 s) let go."""
    import sqlite3
    import time

    from openimpact.db import Database

    db = Database(sqlite_database.url)
    me = _caller(db, make_account(db))
    path = db.engine.url.database
    assert path
    other = db.connect(write=True)
    held = other.begin()  # BEGIN IMMEDIATE: the write lock
    writer = Writer(db)
    look = sqlite3.connect(path)

    def recorded() -> int:
        query = f"SELECT count(*) FROM {Impact.__tablename__} WHERE account_id = ?"
        return int(look.execute(query, (me.account_id,)).fetchone()[0])

    async def go() -> tuple[int, Any]:
        writer.start()
        try:
            submitted = asyncio.ensure_future(writer.submit(Pending(me, _tree(7))))
            await asyncio.sleep(0.2)  # the batch now waits for the lock on the thread
            assert not submitted.done() and recorded() == 0
            held.commit()
            # The loop blocks from here on, as in SQLite's busy handler.
            deadline = time.monotonic() + 5
            while recorded() == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            return recorded(), await submitted
        finally:
            await writer.close()

    try:
        while_blocked, outcome = asyncio.run(asyncio.wait_for(go(), timeout=20))
    finally:
        look.close()
        other.close()
        db.dispose()
    assert while_blocked == 1
    assert isinstance(outcome, Outcome) and outcome.body["tree_planted"] == 7


@pytest.mark.parametrize("pipeline", [True, False], ids=["pipeline", "one-at-a-time"])
def test_a_postgresql_batch_commits_with_its_last_round_trip(
    postgresql_database: TestDatabase, monkeypatch: pytest.MonkeyPatch, pipeline: bool
) -> None:
    """The writer's batch on PostgreSQL: new, known and renamed customers, an
    Idempotency-Key, and the COMMIT sent with the inserts; the same without
    pipeline mode (a libpq older than 14)."""
    import psycopg

    monkeypatch.setattr(psycopg.Pipeline, "is_supported", classmethod(lambda cls: pipeline))
    with TestClient(create_app(postgresql_database.settings())) as client:
        db = client.app.state.db  # type: ignore[attr-defined]
        me = _caller(db, make_account(db))
        known = Pending(me, _tree(1, customer_email="ann@example.com", customer_name="Ann"))
        db.run_sync(lambda s: write_batch(s, [known], now=now_ms()), write=True)
        body = {"amount": 2, "customer_email": "new@example.com"}
        items = [
            Pending(me, _tree(2, customer_email="new@example.com"), "k-1",
                    request_hash("/v1/plant_tree", body)),
            Pending(me, _tree(3, customer_email="ANN@example.com", customer_name="Anna")),
            Pending(me, _tree(4)),
        ]  # fmt: skip
        writer = Writer(db)

        async def go() -> list[Any]:
            writer.start()
            try:
                return await asyncio.gather(*(writer.submit(i) for i in items))
            finally:
                await writer.close()

        results = asyncio.run(go())
        assert [r.status for r in results] == [200, 200, 200]
        assert results[0].body["customer"]["customer_email"] == "new@example.com"
        assert results[1].body["customer"]["customer_name"] == "Anna"
        assert _count(db, Impact, me.account_id) == 4
        assert _count(db, Customer, me.account_id) == 2
        assert _count(db, IdempotencyRecord, me.account_id) == 1
        names = db.run_sync(
            lambda s: dict(
                s.execute(
                    select(Customer.email_key, Customer.name).where(
                        Customer.account_id == me.account_id
                    )
                ).all()
            )
        )
        assert names == {"ann@example.com": "Anna", "new@example.com": None}
        pks = db.run_sync(
            lambda s: s.scalars(
                select(Impact.customer_pk).where(Impact.account_id == me.account_id)
            ).all()
        )
        assert sum(pk is not None for pk in pks) == 3
        ledger = db.run_sync(lambda s: s.get(Ledger, (me.account_id, "production")))
        assert ledger.user_tree_planted == 4 and ledger.customer_tree_planted == 6
        # Committed, and the connections are usable afterwards.
        again = asyncio.run(_write_one(Writer(db), Pending(me, _tree(5))))
        assert again.status == 200
        # The COMMIT went with the inserts: the transaction is over before
        # the caller's own commit.
        conn = db.connect(write=True)
        try:
            with conn.begin(), Session(bind=conn) as session:
                write_batch(session, [Pending(me, _tree(6))], now=now_ms(), commit=True)
                status = conn.connection.driver_connection.info.transaction_status
        finally:
            conn.close()
        assert status == psycopg.pq.TransactionStatus.IDLE
        assert _count(db, Impact, me.account_id) == 6


def test_a_postgresql_batch_is_two_round_trips(
    postgresql_database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever its size and however many accounts it writes for: the reads
    with the ledger update and the customers, then every insert with the
    COMMIT; a refused item's amounts are given back in the second."""
    from openimpact import sql

    trips: list[int] = []
    pipeline = sql.pg_pipeline

    def counted(conn: Any, steps: Any, *, commit: bool = False) -> Any:
        trips.append(len(steps))
        return pipeline(conn, steps, commit=commit)

    with TestClient(create_app(postgresql_database.settings())) as client:
        db = client.app.state.db  # type: ignore[attr-defined]
        callers = [_caller(db, make_account(db)) for _ in range(3)]
        used = Pending(callers[0], _tree(1), "k", "h")
        db.run_sync(lambda s: write_batch(s, [used], now=now_ms()), write=True)
        monkeypatch.setattr(sql, "pg_pipeline", counted)
        for size in (1, 40):
            items = [
                Pending(
                    callers[n % 3],
                    _tree(1, customer_email=f"c{size}-{n}@example.com", metadata={"n": str(n)}),
                    f"key-{size}-{n}",
                    "h",
                    confirm_key=True,
                )
                for n in range(size)
            ]
            items.append(Pending(callers[0], _tree(1), "k", "another"))  # a 409
            trips.clear()
            conn = db.connect(write=True)
            try:
                with (
                    conn.begin(),
                    sql.pg_own_transaction(conn),
                    Session(bind=conn, expire_on_commit=False) as session,
                ):
                    results = write_batch(session, items, now=now_ms(), commit=True)
            finally:
                conn.close()
            assert [r.status for r in results[:-1]] == [200] * size  # type: ignore[union-attr]
            assert isinstance(results[-1], IdempotencyConflict)
            assert len(trips) == 2, trips
        ledger = db.run_sync(lambda s: s.get(Ledger, (callers[0].account_id, "production")))
        assert ledger.user_tree_planted == 1 and ledger.customer_tree_planted == 1 + 14
        assert _count(db, Impact, callers[0].account_id) == 16


async def _write_one(writer: Writer, item: Pending) -> Any:
    writer.start()
    try:
        return await writer.submit(item)
    finally:
        await writer.close()


def test_a_write_turn_given_up_while_waiting_is_let_go_and_one_process_writes_one_batch_at_once(
    tmp_path: Any,
) -> None:
    import fcntl
    import os

    from openimpact.impacts.writer import _WriteTurn

    path = str(tmp_path / "x.db-writer.lock")
    turn = _WriteTurn(path)
    other = os.open(path, os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX)  # another process's turn

    def free_from_outside() -> bool:
        probe = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(probe)  # closing the probe's file lets its lock go
        return True

    async def go() -> list[str]:
        order: list[str] = []
        waiting = asyncio.create_task(turn.__aenter__())
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        fcntl.flock(other, fcntl.LOCK_UN)  # the thread now takes it, then lets go
        for _ in range(100):
            if free_from_outside():
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the abandoned wait kept the turn")

        async def batch(name: str) -> None:
            async with turn:
                order.append(f"{name} in")
                await asyncio.sleep(0.02)
                order.append(f"{name} out")

        await asyncio.wait_for(asyncio.gather(batch("a"), batch("b")), 5)
        return order

    try:
        order = asyncio.run(go())
    finally:
        os.close(other)
        turn.close()
    assert order == ["a in", "a out", "b in", "b out"]


def test_a_batchs_own_postgresql_transaction_begins_in_its_pipeline_and_always_ends(
    postgresql_database: TestDatabase,
) -> None:
    import psycopg
    from sqlalchemy import text

    from openimpact import sql
    from openimpact.db import Database

    status = psycopg.pq.TransactionStatus
    db = Database(postgresql_database.url.replace("postgresql://", "postgresql+psycopg://", 1))
    conn = db.connect(write=True)
    raw = conn.connection.driver_connection
    try:
        with pytest.raises(ZeroDivisionError), conn.begin(), sql.pg_own_transaction(conn):
            assert raw.autocommit and raw.info.transaction_status == status.IDLE
            # The BEGIN goes with the pipeline's first statement...
            ((xid,),) = sql.pg_pipeline(conn, [(text("SELECT pg_current_xact_id()::text"), {})])
            ((same,),) = sql.pg_pipeline(conn, [(text("SELECT pg_current_xact_id()::text"), {})])
            assert xid == same and raw.info.transaction_status == status.INTRANS
            1 / 0  # noqa: B018
        # ...and an error ends the transaction and hands back a normal connection.
        assert raw.info.transaction_status == status.IDLE and raw.autocommit is False
        with conn.begin(), sql.pg_own_transaction(conn):
            sql.pg_pipeline(conn, [(text("SELECT 1"), {})], commit=True)
            assert raw.info.transaction_status == status.IDLE
        assert raw.autocommit is False
    finally:
        conn.close()
        db.dispose()


def test_certificate_and_customer_ids_begin_with_the_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ids made later sort after earlier ones (their unique indexes grow at
    their end); within one millisecond they differ by their random part, of
    80 bits (certificates, in the alphabet of printed certificates) and 64
    (customers)."""
    import re
    import time

    clock = [1_796_000_000_000 * 1_000_000]
    monkeypatch.setattr(time, "time_ns", lambda: clock[0])
    same_ms = [batch.new_certificate_id() for _ in range(1000)]
    customers = [batch.new_customer_id() for _ in range(1000)]
    clock[0] += 1_000_000  # a millisecond later
    later, later_customer = batch.new_certificate_id(), batch.new_customer_id()

    assert all(re.fullmatch(r"[a-z2-7]{24}", c) for c in [*same_ms, later])
    assert all(re.fullmatch(r"C[0-9a-f]{26}", c) for c in [*customers, later_customer])
    assert len(set(same_ms)) == 1000 and len(set(customers)) == 1000
    assert len({c[:8] for c in same_ms}) == 1 and len({c[:11] for c in customers}) == 1
    assert later > max(same_ms) and later_customer > max(customers)
    assert later[:8] != same_ms[0][:8]
