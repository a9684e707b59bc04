"""The write path's statements in each database's own SQL.

Everything here is written for one database: PostgreSQL's JSON recordsets and
data-modifying CTEs, SQLite's json_each, and each dialect's upsert. The rest
of the code reaches them through these names, so a reader finds in one place
what depends on which database.

Why the two spellings of a list lookup: PostgreSQL seeks the unique index once
per row of a row-value IN list, but plans a list of each new length anew;
SQLite scans the whole table for one (its planner seeks only single-column IN
lists). So on PostgreSQL a list goes in as one JSON text unpacked by
json_to_recordset (one statement text whatever the batch's size: psycopg
prepares it once and the server plans it once, and orjson writes it faster than
psycopg adapts arrays), and on SQLite as JSON driven by json_each.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import cache
from operator import itemgetter
from typing import Any, cast

import orjson
import psycopg
from sqlalchemy import Connection, Table, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.exc import DBAPIError

from openimpact.budgets.models import BudgetMonth
from openimpact.db import table
from openimpact.impacts.models import DailyImpact
from openimpact.kit import RECORD_KEYS

_daily = table(DailyImpact)
_months = table(BudgetMonth)

LEDGER_COLUMNS: tuple[str, ...] = tuple(
    f"{who}_{kind}" for who in ("user", "customer") for kind in RECORD_KEYS
)


# SQLite's driver, directly -----------------------------------------------------------------
#
# On SQLite the write path's statements take a few microseconds each, and
# SQLAlchemy's work around each execution (compiling from its cache, binding
# every parameter of every row through its type, building a result) costs
# several times that. So the impact writer runs them on the driver connection
# of its SQLAlchemy connection, in the same transaction, with the same errors
# (SQLAlchemy's DBAPIError family) as Connection.execute would raise.

_QMARK = sqlite.dialect(paramstyle="qmark")


@cache
def _qmark(stmt: Any) -> tuple[str, tuple[str, ...]]:
    compiled = stmt.compile(dialect=_QMARK)
    return compiled.string, tuple(compiled.positiontup or ())


def _driver(conn: Connection, statement: str, values: Any, *, many: bool) -> list[Any]:
    raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    try:
        if many:
            raw.executemany(statement, values)
            return []
        return raw.execute(statement, values).fetchall()
    except sqlite3.Error as exc:
        raise DBAPIError.instance(statement, values, exc, sqlite3.Error) from exc


def sqlite_rows(conn: Connection, stmt: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run ``stmt`` (text or Core, without expanding lists) on SQLite's driver:
    its rows as plain tuples, without type processing (JSON comes back as text,
    booleans as 0 and 1)."""
    statement, names = _qmark(stmt)
    return _driver(conn, statement, tuple(params[name] for name in names), many=False)


def _json_text(value: Any) -> Any:
    return None if value is None else orjson.dumps(value).decode()


@cache
def _insert_qmark(table_name: str, columns: tuple[tuple[str, str], ...], suffix: str) -> str:
    names = ", ".join(c for c, _ in columns)
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table_name} ({names}) VALUES ({marks}){suffix}"


def sqlite_insert(
    conn: Connection,
    table_name: str,
    columns: tuple[tuple[str, str], ...],
    rows: Sequence[dict[str, Any]],
    *,
    suffix: str = "",
    returning: str | None = None,
) -> list[tuple[Any, ...]]:
    """Insert ``rows`` (dicts holding every column of ``columns``; a ``json``
    column holds the value, stored as its JSON text, or None for NULL) in one
    executemany. ``suffix`` follows the VALUES (an ON CONFLICT clause). With
    ``returning`` (columns), one multi-row statement instead, answering those
    columns of each row, in no particular order."""
    get = itemgetter(*(c for c, _ in columns))
    as_json = [i for i, (_, t) in enumerate(columns) if t == "json"]
    values: list[Any] = [get(row) for row in rows]
    if as_json:
        for n, row_values in enumerate(values):
            row_values = values[n] = list(row_values)
            for i in as_json:
                row_values[i] = _json_text(row_values[i])
    if returning is None:
        return _driver(conn, _insert_qmark(table_name, columns, suffix), values, many=True)
    single = _insert_qmark(table_name, columns, "")
    marks = single[single.index(" VALUES ") + len(" VALUES ") :]
    statement = single + "".join(", " + marks for _ in rows[1:]) + f"{suffix} RETURNING {returning}"
    flat = tuple(value for row_values in values for value in row_values)
    return _driver(conn, statement, flat, many=False)


# PostgreSQL's pipeline ---------------------------------------------------------------------
#
# A batch's statements that do not need each other's answers go to the
# server together (psycopg's pipeline mode): one round trip for all of them,
# and, where the batch is its own transaction, the COMMIT goes with the last
# ones. A batch is two: the reads with the ledger update, then the inserts
# with the COMMIT, so a batch holds its ledger rows for one round trip.

_PYFORMAT = PGDialect_psycopg()
_IDLE = psycopg.pq.TransactionStatus.IDLE


@cache
def _pyformat(stmt: Any) -> str:
    return str(stmt.compile(dialect=_PYFORMAT))


@contextmanager
def pg_own_transaction(conn: Connection) -> Iterator[None]:
    """A transaction that is one batch alone (the writer's) and is opened by
    the BEGIN that :func:`pg_pipeline` sends with its first statements: left
    to open it, psycopg sends its own BEGIN first and waits for it, a round
    trip more. The driver connection runs in autocommit mode meanwhile, so
    the batch's first statement must be a pipeline's. What the batch left
    open is committed (a batch whose items were all refused still records
    its budget month and events), or rolled back on an error."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    raw.autocommit = True
    try:
        yield
        if raw.info.transaction_status != _IDLE:
            pg_pipeline(conn, [], commit=True)
    finally:
        try:
            if raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                raw.rollback()
            raw.autocommit = False
        except psycopg.Error as exc:  # the connection is gone: never reused
            conn.invalidate(exc)


def pg_pipeline(
    conn: Connection,
    steps: Sequence[tuple[Any, dict[str, Any] | list[dict[str, Any]]]],
    *,
    commit: bool = False,
) -> list[list[tuple[Any, ...]]]:
    """Run ``steps`` (statement, parameters) in one round trip on
    PostgreSQL's driver connection, in the transaction of ``conn``, and then,
    with ``commit``, COMMIT it: each statement's rows as plain tuples (none
    for a list of parameters, which runs the statement once for each). Errors
    are SQLAlchemy's, as from Connection.execute; a lost connection is
    invalidated (``connection_invalidated``)."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    cursors: list[psycopg.Cursor[Any]] = []
    statement = ""
    try:
        # A libpq older than 14 has no pipeline mode (psycopg[binary] brings
        # its own, newer one): the same statements then go one at a time.
        with raw.pipeline() if psycopg.Pipeline.is_supported() else nullcontext():
            if raw.autocommit and raw.info.transaction_status == _IDLE:
                statement = "BEGIN"  # pg_own_transaction
                raw.execute(statement)
            for stmt, params in steps:
                statement = _pyformat(stmt)
                if isinstance(params, list):
                    cursor = raw.cursor()
                    cursor.executemany(statement, params)
                    cursors.append(cursor)
                else:
                    cursors.append(raw.execute(statement, params))
            if commit:
                # A statement of the pipeline, not Connection.commit(), which
                # would wait for its own sync before the pipeline's: the
                # COMMIT's answer is then the last thing read, so an error
                # raised here always means the batch was not committed.
                statement = "COMMIT"
                raw.execute(statement)
        return [cursor.fetchall() if cursor.description else [] for cursor in cursors]
    except psycopg.Error as exc:
        dialect = conn.dialect
        error = DBAPIError.instance(statement, None, exc, psycopg.Error, dialect=dialect)
        if dialect.is_disconnect(cast(Any, exc), conn.connection.dbapi_connection, None):
            error.connection_invalidated = True
            conn.invalidate(exc)
        raise error from exc


# Lookups by (account, environment, key), one index seek per entry.
STORED_ANSWERS_SQLITE = text(
    "SELECT i.account_id, i.env, i.key, i.request_hash, i.status_code, i.response_body "
    "FROM json_each(:p_slots) AS j CROSS JOIN idempotency_keys AS i "
    "WHERE i.account_id = json_extract(j.value, '$[0]') "
    "AND i.env = json_extract(j.value, '$[1]') AND i.key = json_extract(j.value, '$[2]')"
)
FIND_CUSTOMERS_SQLITE = text(
    "SELECT c.account_id, c.env, c.email_key, c.id, c.customer_id, c.email, c.name "
    "FROM json_each(:p_slots) AS j CROSS JOIN customers AS c "
    "WHERE c.account_id = json_extract(j.value, '$[0]') "
    "AND c.env = json_extract(j.value, '$[1]') AND c.email_key = json_extract(j.value, '$[2]')"
)


def recordset(param: str, alias: str, columns: tuple[tuple[str, str], ...]) -> str:
    fields = ", ".join(f"{c} {t}" for c, t in columns)
    return f"json_to_recordset(CAST(:{param} AS json)) AS {alias}({fields})"


SLOT_COLUMNS = (("a", "bigint"), ("e", "varchar"), ("k", "varchar"))
# LATERAL with LIMIT 1 (each triple is unique): one index seek per entry,
# whatever the planner guesses of the list's length (json_to_recordset is
# estimated at 100 rows, for which a hash join over the whole table looks
# cheaper, and a plain join or LATERAL is flattened into one).
STORED_ANSWERS_PG = text(
    "SELECT i.account_id, i.env, i.key, i.request_hash, i.status_code, i.response_body "
    f"FROM {recordset('p_slots', 'j', SLOT_COLUMNS)} CROSS JOIN LATERAL ("
    "SELECT * FROM idempotency_keys WHERE account_id = j.a AND env = j.e AND key = j.k LIMIT 1"
    ") AS i"
)
# Customers are sought as the first entry at or after each triple in their
# unique index, kept only when it is that triple: only the unique index can
# seek a row comparison of its own columns in their order and return its
# entries in that order. Asked for the plain equalities, a database without
# planner statistics (a fresh one, or autovacuum off) ties that index with
# (account_id, env, onboarded_ms, id), picks the latter, and filters the
# account's every customer by email for each one sought.
FIND_CUSTOMERS_PG = text(
    "SELECT c.account_id, c.env, c.email_key, c.id, c.customer_id, c.email, c.name "
    f"FROM {recordset('p_slots', 'j', SLOT_COLUMNS)} CROSS JOIN LATERAL ("
    "SELECT * FROM customers WHERE (account_id, env, email_key) >= (j.a, j.e, j.k) "
    "ORDER BY account_id, env, email_key LIMIT 1"
    ") AS c WHERE c.account_id = j.a AND c.env = j.e AND c.email_key = j.k"
)
CUSTOMER_COLUMNS = (
    ("customer_id", "varchar"),
    ("account_id", "bigint"),
    ("env", "varchar"),
    ("email", "varchar"),
    ("email_key", "varchar"),
    ("name", "varchar"),
    ("onboarded_ms", "bigint"),
)
INSERT_CUSTOMERS_PG = text(
    f"INSERT INTO customers ({', '.join(c for c, _ in CUSTOMER_COLUMNS)}) "
    f"SELECT * FROM {recordset('p_rows', 'r', CUSTOMER_COLUMNS)} "
    "RETURNING customer_id, id"
)
VALID_KEYS_SQLITE = text(
    "SELECT key_hash FROM api_keys WHERE key_hash IN (SELECT value FROM json_each(:p_hashes)) "
    "AND revoked_ms IS NULL"
)
# One index seek per key (LATERAL with LIMIT 1, as above): with the list as
# ``key_hash = ANY(...)``, the planner reads every API key of the platform
# once the list is longer than a few.
VALID_KEYS_PG = text(
    "SELECT k.key_hash FROM unnest(CAST(:p_hashes AS text[])) AS h(hash) CROSS JOIN LATERAL ("
    "SELECT key_hash FROM api_keys WHERE key_hash = h.hash AND revoked_ms IS NULL LIMIT 1"
    ") AS k"
)
IMPACT_COLUMNS = (
    ("account_id", "bigint"),
    ("env", "varchar"),
    ("time_ms", "bigint"),
    ("impact_type", "varchar"),
    ("amount", "bigint"),
    ("category", "varchar"),
    ("cause", "varchar"),
    ("customer_pk", "bigint"),
    ("is_customer", "boolean"),
    ("metadata", "json"),
    ("notify", "boolean"),
    ("is_bonus", "boolean"),
    ("schedule_id", "varchar"),
    ("period", "varchar"),
    ("cost_cents", "bigint"),
    ("certificate_id", "varchar"),
    ("stage", "varchar"),
)
OUTBOX_COLUMNS = (
    ("kind", "varchar"),
    ("account_id", "bigint"),
    ("env", "varchar"),
    ("payload", "json"),
    ("created_ms", "bigint"),
    ("next_attempt_ms", "bigint"),
    ("attempts", "integer"),
    ("delivered_ms", "bigint"),
    ("failed_ms", "bigint"),
    ("last_error", "text"),
    ("event_id", "varchar"),
    ("event_type", "varchar"),
    ("endpoint_pk", "bigint"),
)
IDEMPOTENCY_COLUMNS = (
    ("account_id", "bigint"),
    ("env", "varchar"),
    ("key", "varchar"),
    ("request_hash", "varchar"),
    ("status_code", "integer"),
    ("response_body", "text"),
    ("created_ms", "bigint"),
)
DAILY_COLUMNS = (
    ("account_id", "bigint"),
    ("env", "varchar"),
    ("day", "varchar"),
    *((k, "bigint") for k in RECORD_KEYS),
)


# The daily series on SQLite (sqlite_insert's suffix): add to the day's row.
DAILY_ADD = " ON CONFLICT (account_id, env, day) DO UPDATE SET " + ", ".join(
    f"{k} = daily_impacts.{k} + excluded.{k}" for k in RECORD_KEYS
)


def insert_from_json(table_name: str, param: str, columns: tuple[tuple[str, str], ...]) -> str:
    names = ", ".join(c for c, _ in columns)
    return f"INSERT INTO {table_name} ({names}) SELECT * FROM {recordset(param, 'r', columns)}"


# Whether an endpoint listens to an account and environment's events: an
# event nobody listens to is settled as it is written (delivered_ms), so the
# worker never has to claim it.
LISTENING = (
    "EXISTS (SELECT 1 FROM webhook_endpoints AS w WHERE w.account_id = {a} "
    "AND w.env = {e} AND w.enabled AND w.deleted_ms IS NULL)"
)


LISTENING_SQLITE = text(
    "SELECT DISTINCT account_id, env FROM webhook_endpoints "
    "WHERE account_id IN (SELECT value FROM json_each(:p_accounts)) "
    "AND enabled = 1 AND deleted_ms IS NULL"
)


def _insert_outbox_from_json(param: str) -> str:
    names = ", ".join(c for c, _ in OUTBOX_COLUMNS)
    values = ", ".join(
        (
            "CASE WHEN r.kind = 'event' AND r.delivered_ms IS NULL AND NOT "
            + LISTENING.format(a="r.account_id", e="r.env")
            + " THEN r.created_ms ELSE r.delivered_ms END"
        )
        if c == "delivered_ms"
        else f"r.{c}"
        for c, _ in OUTBOX_COLUMNS
    )
    return (
        f"INSERT INTO outbox ({names}) SELECT {values} FROM {recordset(param, 'r', OUTBOX_COLUMNS)}"
    )


# New customers, impacts, the daily series, outbox messages and
# Idempotency-Keys in one statement (data-modifying CTEs) of fixed text: one
# round trip per batch, with the renames of customers before it (one by one by
# primary key). An impact of a new customer names it by its email key
# (``customer_key``), and takes the id its insert returned.
_IMPACT_VALUES = ", ".join(
    "COALESCE(r.customer_pk, c.id)" if name == "customer_pk" else f"r.{name}"
    for name, _ in IMPACT_COLUMNS
)
INSERT_ROWS_PG = text(
    "WITH c AS ("
    + insert_from_json("customers", "p_customers", CUSTOMER_COLUMNS)
    + " RETURNING id, account_id, env, email_key"
    + "), i AS (INSERT INTO impacts ("
    + ", ".join(name for name, _ in IMPACT_COLUMNS)
    + f") SELECT {_IMPACT_VALUES} FROM "
    + recordset("p_impacts", "r", (*IMPACT_COLUMNS, ("customer_key", "varchar")))
    + " LEFT JOIN c ON c.account_id = r.account_id AND c.env = r.env"
    + " AND c.email_key = r.customer_key"
    + "), d AS ("
    + insert_from_json("daily_impacts", "p_daily", DAILY_COLUMNS)
    + " ON CONFLICT (account_id, env, day) DO UPDATE SET "
    + ", ".join(f"{k} = daily_impacts.{k} + excluded.{k}" for k in RECORD_KEYS)
    + "), o AS ("
    + _insert_outbox_from_json("p_outbox")
    + "), k AS ("
    + insert_from_json("idempotency_keys", "p_keys", IDEMPOTENCY_COLUMNS)
    + ") SELECT 1"
)


LEDGER_SET = ", ".join(
    [
        "last_ms = CASE WHEN ledgers.last_ms >= v.now THEN ledgers.last_ms + v.n "
        "ELSE v.now + v.n - 1 END"
    ]
    + [f"{c} = ledgers.{c} + v.{c}" for c in LEDGER_COLUMNS]
)
LEDGER_RETURNING = "RETURNING ledgers.account_id, ledgers.env, ledgers.last_ms"
LEDGER_FIELDS = (
    ("account_id", "bigint"),
    ("env", "varchar"),
    ("n", "bigint"),
    ("now", "bigint"),
    *((c, "bigint") for c in LEDGER_COLUMNS),
)
# Every ledger row of a batch updated by its primary key, in the list's
# order (which the writer sorts: two batches lock rows in one order and never
# deadlock), returning each row's new ``last_ms``: ``max(last + n, now + n - 1)``
# makes the batch's n times ``last - n + 1 … last`` strictly increasing after
# the row's previous ones, and equal to the wall clock unless a burst runs
# ahead of it; with n = 0, amounts given back for items refused after the
# update, the clock unchanged (their milliseconds stay unused). A function
# installed by migration 0009, which says why one UPDATE joined to the list
# would not do; SQLite runs the same rule as one statement (below).
LEDGER_PG = text(
    "SELECT account_id, env, last_ms FROM openimpact_add_to_ledgers(CAST(:p_rows AS json))"
)


@cache
def ledger_sqlite(groups: int) -> Any:
    names = ", ".join(name for name, _ in LEDGER_FIELDS)
    rows = ", ".join(
        "(" + ", ".join(f":{name}{g}" for name, _ in LEDGER_FIELDS) + ")" for g in range(groups)
    )
    return text(
        f"WITH v({names}) AS (VALUES {rows}) UPDATE ledgers SET {LEDGER_SET} FROM v "
        f"WHERE ledgers.account_id = v.account_id AND ledgers.env = v.env {LEDGER_RETURNING}"
    )


@cache
def daily_upsert(dialect_name: str) -> Any:
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    stmt = dialect.insert(_daily)
    return stmt.on_conflict_do_update(
        index_elements=[_daily.c.account_id, _daily.c.env, _daily.c.day],
        set_={k: _daily.c[k] + stmt.excluded[k] for k in RECORD_KEYS},
    )


# Budgets (budgets/service.py) -------------------------------------------------------------

# The budget rows of a batch: locked (PostgreSQL) in one order, so that two
# batches of one account wait for each other here. The month's spend is read
# by a second statement, after the lock: a statement that waited for a lock
# sees the locked rows as committed since, but the rows it joined to them as
# they were when it began.
#
# Each row is sought by its key (LATERAL with LIMIT 1, as the Idempotency-Keys
# above) and locked as it is found: in the order of the list, which the
# caller sorts.
BUDGETS_PG = text(
    "SELECT b.account_id, b.env, b.monthly_cents "
    "FROM json_to_recordset(CAST(:p_rows AS json)) AS j(a bigint, e varchar) CROSS JOIN LATERAL ("
    "SELECT * FROM budgets WHERE account_id = j.a AND env = j.e LIMIT 1 FOR UPDATE"
    ") AS b"
)
MONTHS_PG = text(
    "SELECT m.account_id, m.env, m.spent_cents, m.warned_ms, m.exceeded_ms "
    "FROM json_to_recordset(CAST(:p_rows AS json)) AS j(a bigint, e varchar) CROSS JOIN LATERAL ("
    "SELECT * FROM budget_months WHERE account_id = j.a AND env = j.e AND month = :p_month "
    "LIMIT 1) AS m"
)
BUDGETS_SQLITE = text(
    "SELECT b.account_id, b.env, b.monthly_cents "
    "FROM json_each(:p_rows) AS j CROSS JOIN budgets AS b "
    "ON b.account_id = json_extract(j.value, '$[0]') AND b.env = json_extract(j.value, '$[1]')"
)
MONTHS_SQLITE = text(
    "SELECT m.account_id, m.env, m.spent_cents, m.warned_ms, m.exceeded_ms "
    "FROM json_each(:p_rows) AS j CROSS JOIN budget_months AS m "
    "ON m.account_id = json_extract(j.value, '$[0]') AND m.env = json_extract(j.value, '$[1]') "
    "AND m.month = :p_month"
)


@cache
def budget_month_upsert(dialect_name: str) -> Any:
    """A month's spend, and when its owners were told, keeping the first telling."""
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    stmt = dialect.insert(_months)
    return stmt.on_conflict_do_update(
        index_elements=[_months.c.account_id, _months.c.env, _months.c.month],
        set_={
            "spent_cents": stmt.excluded.spent_cents,
            "warned_ms": func.coalesce(_months.c.warned_ms, stmt.excluded.warned_ms),
            "exceeded_ms": func.coalesce(_months.c.exceeded_ms, stmt.excluded.exceeded_ms),
        },
    )


def insert_once(conn: Connection, table_: Table, unique: list[str], values: dict[str, Any]) -> Any:
    """Insert a row unless one with the same ``unique`` columns exists: its id,
    or None. The exactly-once gate of schedule periods and plan months."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (
        dialect.insert(table_)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[table_.c[name] for name in unique])
        .returning(table_.c.id)
    )
    return conn.execute(stmt).scalar()


def upsert(
    conn: Connection,
    table_: Table,
    unique: list[str],
    rows: list[dict[str, Any]] | Any,
    update_columns: list[str],
    *,
    columns: list[str] | None = None,
    increment: tuple[str, ...] = (),
) -> int:
    """Insert rows (a list, or a SELECT of ``columns``) and, where one with
    the same ``unique`` columns exists, set its ``update_columns`` to the new
    row's and add one to its ``increment`` columns: how many rows were written."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table_)
    stmt = stmt.from_select(columns, rows) if columns is not None else stmt.values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table_.c[name] for name in unique],
        set_={
            **{name: stmt.excluded[name] for name in update_columns},
            **{name: table_.c[name] + 1 for name in increment},
        },
    )
    return len(conn.execute(stmt.returning(table_.c.id)).all())


def insert_new(
    conn: Connection, table_: Table, unique: list[str], rows: list[dict[str, Any]]
) -> None:
    """Insert the rows that do not exist yet (by ``unique``)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table_).on_conflict_do_nothing(
        index_elements=[table_.c[name] for name in unique]
    )
    conn.execute(stmt, rows)


def claim(
    conn: Connection,
    table_: Table,
    due: list[Any],
    order_by: list[Any],
    limit: int,
    values: dict[str, Any],
    returning: list[Any],
) -> list[Any]:
    """Lease up to ``limit`` due rows in one statement: UPDATE … WHERE id IN
    (the first due ids); on PostgreSQL those ids are taken ``FOR UPDATE SKIP
    LOCKED``, so workers claiming at once split the rows between them (SQLite
    has one writer at a time)."""
    ids = select(table_.c.id).where(*due).order_by(*order_by).limit(limit)
    if conn.dialect.name == "postgresql":
        ids = ids.with_for_update(skip_locked=True)
    stmt = (
        update(table_)
        .where(table_.c.id.in_(ids.scalar_subquery()))
        .values(**values)
        .returning(*returning)
    )
    return list(conn.execute(stmt).all())
