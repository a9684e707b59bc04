"""Writing many impacts in one transaction (group commit, issue 10).

:func:`write_batch` is the one place where impacts are created: the API's
writer (impacts/writer.py) hands it what concurrent requests sent, and
``record_impact`` (the demo, tests), schedules and plan bonuses hand it their own.
A batch costs a fixed number of statements whatever its size:

1. confirm the callers' API keys (a key revoked a moment ago fails here);
2. look up the Idempotency-Keys: a stored answer is replayed, a different
   body with a used key is a 409;
3. check donation causes against the accounts' configured causes, and
   monthly budget caps (budgets/service.py: the budget rows are locked, and an
   impact that would pass its cap gets a 402);
4. update each account and environment's ledger row once: add the batch's
   totals and allocate a range of ``time_utc`` milliseconds (the row lock
   serializes writers of one account and environment across processes, which
   is what keeps ``time_utc`` unique and increasing);
5. onboard or rename customers (safe without upserts: the ledger lock is held);
6. insert impacts, add to the daily series, queue outbox messages (the
   customer's email, the ``impact.initiated`` event) and store the answers
   under their Idempotency-Keys, each as one multi-row statement.

On PostgreSQL a batch is two round trips: steps 1, 2, 4 (for every item) and
the read of the customers go in the first, the rest of step 3 and step 6 in
the last, with the COMMIT where the batch is its own transaction; what step 4
took for an item refused in steps 1–3 is given back there (its millisecond
stays unused). Statements written in one database's own SQL live in
``openimpact/sql.py``.

Items refused in steps 1–3 get their own error and stay out of the batch; the
rest commit together. An Idempotency-Key that another process stored between
step 2 and step 6 makes step 6 raise :class:`IdempotencyRace`; the caller rolls
the batch back and runs it again, and step 2 then replays.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from openimpact import sql
from openimpact.accounts.models import Account
from openimpact.auth import UNKNOWN_KEY, Caller
from openimpact.budgets.service import budget_lookup, check_caps
from openimpact.customers.models import Customer
from openimpact.db import table
from openimpact.errors import IdempotencyConflict, KeyError_, OpenImpactError, ValidationFailed
from openimpact.impacts.tracking import VIEW_COLUMNS, cause_labels, impact_view
from openimpact.kit import RECORD_KEYS, clock_ordered_b32, clock_ordered_hex
from openimpact.outbox import service as outbox
from openimpact.sql import LEDGER_COLUMNS
from openimpact.timeutil import day_of, ms_to_iso

_customers = table(Customer)
_accounts = table(Account)

# Every statement is built once, with bind parameters (expanding ones for the
# lists): building a statement and its cache key again on every call costs
# more than running it on SQLite (issue 4).
_CAUSES = select(_accounts.c.id, _accounts.c.causes).where(
    _accounts.c.id.in_(bindparam("p_accounts", expanding=True))
)
_RENAME_CUSTOMER = (
    update(_customers).where(_customers.c.id == bindparam("p_pk")).values(name=bindparam("p_name"))
)


class IdempotencyRace(Exception):
    """Another transaction stored one of the batch's Idempotency-Keys first."""


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    body: dict[str, Any]
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class NewImpact:
    impact_type: str
    amount: int
    category: str | None
    customer_email: str | None
    customer_name: str | None
    notify: bool | None
    metadata: dict[str, str] | None
    # Where it came from, when not a request (issue 11).
    is_bonus: bool = False
    schedule_id: str | None = None
    period: str | None = None


@dataclass(slots=True)
class Pending:
    """One impact to write, as a request asked for it."""

    caller: Caller
    new: NewImpact
    key: str | None = None  # Idempotency-Key
    req_hash: str | None = None
    # Confirm the caller's API key in the batch's transaction (requests: a key
    # taken from the per-process cache may have been revoked since).
    confirm_key: bool = False
    # The base of the certificate link in the impact's events (the request's).
    base_url: str | None = None

    @property
    def idempotency_slot(self) -> tuple[int, str, str] | None:
        if self.key is None:
            return None
        return (self.caller.account_id, self.caller.env, self.key)


Result = Outcome | OpenImpactError


# json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
# with its encoder made once rather than on every call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_hash(path: str, body: dict[str, Any]) -> str:
    canonical = _CANONICAL.encode(body)
    return hashlib.sha256(f"{path}\n{canonical}".encode("utf-8", "surrogatepass")).hexdigest()


def new_certificate_id() -> str:
    # 24 characters in a URL-safe lower-case alphabet, easy to read aloud or
    # type from a printed certificate: the clock's milliseconds, so that the
    # ids' unique index grows at its end, then 80 random bits, unguessable.
    return clock_ordered_b32(80)


def new_customer_id() -> str:
    # The clock first for the same reason; 64 random bits after it.
    return "C" + clock_ordered_hex(8)


@dataclass(slots=True)
class _Customer:
    pk: int | None
    customer_id: str
    email: str
    name: str | None
    first_name: str | None  # the name the batch found or first gave it
    new: bool
    onboarded_ms: int = 0
    key: str = ""  # its email key


@dataclass(slots=True)
class _Group:
    """The batch's items of one account and environment."""

    account_id: int
    env: str
    indexes: list[int] = field(default_factory=list)
    deltas: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LEDGER_COLUMNS, 0))


_NEW_VIEW = dict.fromkeys(VIEW_COLUMNS)


def write_batch(
    session: Session,
    items: Sequence[Pending],
    *,
    now: int,
    events: outbox.Events = outbox.Events(),
    commit: bool = False,
) -> list[Result]:
    """Write ``items`` in the session's transaction; one answer or error per item.

    Two items must not share an Idempotency-Key (the writer holds the second
    back for the next batch, where it replays the first's answer). ``commit``
    says that the batch is its transaction and the caller commits it next (the
    writer): on PostgreSQL the COMMIT then goes in the round trip of the last
    statement, and the caller's own commit finds nothing left to do.
    """
    conn = session.connection()
    postgres = conn.dialect.name == "postgresql"
    results: list[Result | None] = [None] * len(items)
    # PostgreSQL: every item's ledger row is updated in the reads' round trip
    # (an item refused below gives its amounts back in the last one).
    claimed = _groups(items, range(len(items))) if postgres else []
    found = _read(conn, items, claimed, now)
    _confirm_keys(items, results, found.valid_keys)
    _replay(items, results, found.stored)
    causes = _check_causes(session, items, results)
    # Monthly budget caps (budgets/service.py): refused items get a 402.
    costs = check_caps(
        session,
        items,
        results,
        {
            (item.caller.account_id, item.caller.env)
            for i, item in enumerate(items)
            if results[i] is None
        },
        now,
        events=events.enabled,
        budgets=found.budgets,
    )

    groups = {
        (g.account_id, g.env): g
        for g in _groups(items, [i for i in range(len(items)) if results[i] is None])
    }
    given_back = _given_back(claimed, groups)
    if not groups:
        if given_back:
            sql.pg_pipeline(conn, [_give_back(given_back)], commit=commit)
        return _done(results)

    labels = (
        cause_labels(session, [c for a in causes.values() for c in a]) if events.enabled else {}
    )
    wanted: dict[tuple[int, str, str], list[int]] = {}
    for group in groups.values():
        for i in group.indexes:
            email = items[i].new.customer_email
            if email is not None:
                wanted.setdefault((group.account_id, group.env, email.lower()), []).append(i)
    # Customers are read under the ledger lock (safe without upserts): on
    # SQLite the write lock is held from the transaction's start; on
    # PostgreSQL _read found them after the ledger update, in its round trip.
    known = {slot: found.customers[slot] for slot in wanted if slot in found.customers}
    times = (
        _times(claimed, found.ledger, results)
        if postgres
        else _allocate(conn, list(groups.values()), now, results)
    )
    customers = _Customers(items, wanted, known, times)

    impact_rows: list[dict[str, Any]] = []
    daily: dict[tuple[int, str, str], dict[str, int]] = {}
    outbox_rows: list[dict[str, Any]] = []
    idem_rows: list[dict[str, Any]] = []
    for i, time_ms in times.items():
        item = items[i]
        caller, new = item.caller, item.new
        customer = customers.of_item.get(i)
        on_behalf = customer is not None
        production = caller.env == "production"
        notify = production and on_behalf and new.notify is not False
        row: dict[str, Any]
        impact_rows.append(
            row := {
                "account_id": caller.account_id,
                "env": caller.env,
                "time_ms": time_ms,
                "impact_type": new.impact_type,
                "amount": new.amount,
                "category": new.category,
                "cause": (new.category or causes[caller.account_id][0])
                if new.impact_type == "money_donated"
                else None,
                "customer_pk": customer[0].pk if customer is not None else None,
                "customer_key": customer[0].key if customer is not None else None,
                "is_customer": on_behalf,
                "metadata": new.metadata or None,
                "notify": notify,
                "is_bonus": new.is_bonus,
                "schedule_id": new.schedule_id,
                "period": new.period,
                "cost_cents": costs.get(i),
                "certificate_id": new_certificate_id() if production else None,
                "stage": "initiated",
            }
        )
        day_row = daily.setdefault(
            (caller.account_id, caller.env, day_of(time_ms)), dict.fromkeys(RECORD_KEYS, 0)
        )
        day_row[new.impact_type] += new.amount

        body: dict[str, Any] = {
            "user_id": caller.user_id,
            new.impact_type: new.amount,
            "time_utc": ms_to_iso(time_ms),
        }
        if new.category is not None:
            body["category"] = new.category
        if customer is not None:
            body["customer"] = customer[1]
        if notify:
            payload = {"template": outbox.IMPACT_CREATED, "user_id": caller.user_id, **body}
            outbox_rows.append(outbox.message("email", caller.account_id, caller.env, payload, now))
        if events.enabled:
            view = impact_view(
                {**_NEW_VIEW, **row},
                caller.user_id,
                item.base_url or events.certificate_base(),
                labels.get(row["cause"]) if row["cause"] is not None else None,
            )
            outbox_rows.append(
                outbox.event(
                    outbox.IMPACT_EVENTS["initiated"], caller.account_id, caller.env, view, now
                )
            )
            if new.schedule_id is not None:
                outbox_rows.append(
                    outbox.event(
                        outbox.SCHEDULE_IMPACT_CREATED, caller.account_id, caller.env, view, now
                    )
                )
        outcome = Outcome(status=200, body=body)
        if item.key is not None:
            idem_rows.append(
                {
                    "account_id": caller.account_id,
                    "env": caller.env,
                    "key": item.key,
                    "request_hash": item.req_hash,
                    "status_code": outcome.status,
                    "response_body": orjson.dumps(body).decode(),
                    "created_ms": now,
                }
            )
        results[i] = outcome

    if events.emails_unsent is not None:
        outbox.settle_unsent(outbox_rows, events.emails_unsent)
    # No savepoint: an Idempotency-Key conflict voids the whole batch, which
    # the caller rolls back and runs again (its lookup then replays).
    try:
        if postgres:
            _insert_rows_pg(
                conn,
                customers,
                impact_rows,
                daily,
                outbox_rows,
                idem_rows,
                given_back=given_back,
                commit=commit,
            )
        else:
            customers.insert_sqlite(conn, impact_rows)
            sql.sqlite_insert(conn, "impacts", sql.IMPACT_COLUMNS, impact_rows)
            add_daily(session, daily)
            if outbox_rows:
                # On PostgreSQL the insert itself settles the unheard events.
                outbox.settle_unheard(session, outbox_rows)
                sql.sqlite_insert(conn, "outbox", sql.OUTBOX_COLUMNS, outbox_rows)
            if idem_rows:
                sql.sqlite_insert(conn, "idempotency_keys", sql.IDEMPOTENCY_COLUMNS, idem_rows)
    except IntegrityError as exc:
        if _IDEMPOTENCY_UNIQUE in str(exc.orig):
            raise IdempotencyRace() from None
        raise
    return _done(results)


_IDEMPOTENCY_UNIQUE = "idempotency_keys"


def _insert_rows_pg(
    conn: Connection,
    customers: _Customers,
    impact_rows: list[dict[str, Any]],
    daily: dict[tuple[int, str, str], dict[str, int]],
    outbox_rows: list[dict[str, Any]],
    idem_rows: list[dict[str, Any]],
    *,
    given_back: list[dict[str, Any]],
    commit: bool,
) -> None:
    daily_rows = [
        {"account_id": a, "env": e, "day": d, **amounts}
        for (a, e, d), amounts in sorted(daily.items())
    ]
    params = {
        "p_customers": orjson.dumps(customers.new_rows()).decode(),
        "p_impacts": orjson.dumps(impact_rows).decode(),
        "p_daily": orjson.dumps(daily_rows).decode(),
        "p_outbox": orjson.dumps(outbox_rows).decode(),
        "p_keys": orjson.dumps(idem_rows).decode(),
    }
    steps: list[tuple[Any, Any]] = [_give_back(given_back)] if given_back else []
    renames = customers.renames()
    if renames:  # one by one by primary key, as on SQLite
        steps.append((_RENAME_CUSTOMER, [{"p_pk": r["pk"], "p_name": r["name"]} for r in renames]))
    sql.pg_pipeline(conn, [*steps, (sql.INSERT_ROWS_PG, params)], commit=commit)


def _give_back(rows: list[dict[str, Any]]) -> tuple[Any, dict[str, Any]]:
    return sql.LEDGER_PG, {"p_rows": orjson.dumps(rows).decode()}


def _done(results: list[Result | None]) -> list[Result]:
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


Slot = tuple[int, str, str]  # account id, environment, and a key or an email key


@dataclass(slots=True)
class _Found:
    """What the batch reads before it writes."""

    valid_keys: set[str] | None  # None: no key to confirm
    stored: dict[Slot, tuple[Any, ...]]  # Idempotency-Key → (hash, status, body)
    customers: dict[Slot, _Customer]  # email key → customer
    budgets: list[tuple[Any, ...]]
    ledger: dict[tuple[int, str], int]  # PostgreSQL: each claimed row's new last_ms


def _read(conn: Connection, items: Sequence[Pending], claimed: list[_Group], now: int) -> _Found:
    """The API keys to confirm, the stored answers of the Idempotency-Keys,
    the budget caps and the customers named of every item of the batch. On
    PostgreSQL in one round trip with the update of the ``claimed`` ledger
    rows, which takes their locks (after the budget rows', as every writer
    takes them), so that the customers are read under them."""
    postgres = conn.dialect.name == "postgresql"
    hashes = sorted({item.caller.key_hash for item in items if item.confirm_key})
    slots = sorted({s for item in items if (s := item.idempotency_slot) is not None})
    emails = sorted(
        {
            (item.caller.account_id, item.caller.env, item.new.customer_email.lower())
            for item in items
            if item.new.customer_email is not None
        }
    )
    budgets = budget_lookup(
        conn.dialect.name, {(item.caller.account_id, item.caller.env) for item in items}
    )
    steps: list[tuple[Any, dict[str, Any]]] = []
    if postgres:
        if hashes:
            steps.append((sql.VALID_KEYS_PG, {"p_hashes": hashes}))
        if slots:
            steps.append((sql.STORED_ANSWERS_PG, {"p_slots": _pg_slots(slots)}))
        steps.append(budgets)
        claims = _ledger_steps(claimed, now)
        steps += claims
        if emails:
            steps.append((sql.FIND_CUSTOMERS_PG, {"p_slots": _pg_slots(emails)}))
        answers = iter(sql.pg_pipeline(conn, steps))
    else:
        claims = []
        if hashes:
            steps.append((sql.VALID_KEYS_SQLITE, {"p_hashes": orjson.dumps(hashes).decode()}))
        if slots:
            steps.append((sql.STORED_ANSWERS_SQLITE, {"p_slots": orjson.dumps(slots).decode()}))
        steps.append(budgets)
        if emails:
            steps.append((sql.FIND_CUSTOMERS_SQLITE, {"p_slots": orjson.dumps(emails).decode()}))
        answers = iter([sql.sqlite_rows(conn, stmt, params) for stmt, params in steps])
    valid = {row[0] for row in next(answers)} if hashes else None
    stored = {(r[0], r[1], r[2]): r[3:] for r in next(answers)} if slots else {}
    found_budgets = next(answers)
    ledger: dict[tuple[int, str], int] = {}
    if claims:
        ledger = {(r[0], r[1]): r[2] for r in next(answers)}
    customers = {(r[0], r[1], r[2]): _customer_row(r[3:]) for r in next(answers)} if emails else {}
    return _Found(valid, stored, customers, found_budgets, ledger)


def _pg_slots(slots: Sequence[Slot]) -> str:
    return orjson.dumps([{"a": a, "e": e, "k": k} for a, e, k in slots]).decode()


def _customer_row(row: Sequence[Any]) -> _Customer:
    pk, customer_id, email, name = row
    return _Customer(pk, customer_id, email, name, name, False)


def _confirm_keys(
    items: Sequence[Pending], results: list[Result | None], valid: set[str] | None
) -> None:
    if valid is None:
        return
    for i, item in enumerate(items):
        if item.confirm_key and item.caller.key_hash not in valid:
            results[i] = KeyError_(UNKNOWN_KEY)


def _replay(
    items: Sequence[Pending], results: list[Result | None], stored: dict[Slot, tuple[Any, ...]]
) -> None:
    for i, item in enumerate(items):
        slot = item.idempotency_slot
        if results[i] is not None or slot is None or slot not in stored:
            continue
        req_hash, status, body = stored[slot]
        if req_hash != item.req_hash:
            results[i] = IdempotencyConflict(
                "Idempotency-Key was already used with a different request; "
                "use a new key for a new request"
            )
        else:
            results[i] = Outcome(status=status, body=json.loads(body), replayed=True)


def _check_causes(
    session: Session, items: Sequence[Pending], results: list[Result | None]
) -> dict[int, list[str]]:
    """The configured causes of each account that donates in the batch; a
    donation to a cause its account has not configured is refused."""
    donations = [
        i
        for i, item in enumerate(items)
        if results[i] is None and item.new.impact_type == "money_donated"
    ]
    if not donations:
        return {}
    wanted = sorted({items[i].caller.account_id for i in donations})
    causes: dict[int, list[str]] = {account_id: ["trees"] for account_id in wanted}
    for account_id, configured in session.connection().execute(_CAUSES, {"p_accounts": wanted}):
        causes[account_id] = configured or ["trees"]
    for i in donations:
        requested = items[i].new.category
        allowed = causes[items[i].caller.account_id]
        if requested is not None and requested not in allowed:
            results[i] = ValidationFailed(
                f"category: '{requested}' is not a cause configured for this account; "
                f"allowed: {', '.join(allowed)}"
            )
    return causes


def _groups(items: Sequence[Pending], indexes: Sequence[int]) -> list[_Group]:
    """The items at ``indexes`` by account and environment, in that order,
    each group with its items in the batch's order and their amounts."""
    groups: dict[tuple[int, str], _Group] = {}
    for i in indexes:
        item = items[i]
        caller = item.caller
        group = groups.get((caller.account_id, caller.env))
        if group is None:
            group = groups[(caller.account_id, caller.env)] = _Group(caller.account_id, caller.env)
        group.indexes.append(i)
        column = ("customer_" if item.new.customer_email is not None else "user_") + (
            item.new.impact_type
        )
        group.deltas[column] += item.new.amount
    return sorted(groups.values(), key=lambda g: (g.account_id, g.env))


def _ledger_rows(groups: list[_Group], now: int) -> list[dict[str, Any]]:
    return [
        {
            "account_id": group.account_id,
            "env": group.env,
            "n": len(group.indexes),
            "now": now,
            **group.deltas,
        }
        for group in groups
    ]


def _ledger_steps(groups: list[_Group], now: int) -> list[tuple[Any, dict[str, Any]]]:
    """PostgreSQL: the update of the ledger rows of ``groups`` (totals and
    clock), returning each row's new ``last_ms``. The rows are updated, and
    so locked, in the groups' order (account, environment), as every batch
    does, so that two processes writing for the same accounts never
    deadlock."""
    if not groups:
        return []
    return [(sql.LEDGER_PG, {"p_rows": orjson.dumps(_ledger_rows(groups, now)).decode()})]


def _given_back(
    claimed: list[_Group], written: dict[tuple[int, str], _Group]
) -> list[dict[str, Any]]:
    """PostgreSQL: what the claimed ledger rows took for items that were
    refused, as ledger rows that subtract it again and leave the clock (n = 0:
    the refused items' milliseconds stay unused)."""
    back: list[dict[str, Any]] = []
    for group in claimed:
        kept = written.get((group.account_id, group.env))
        if kept is not None and len(kept.indexes) == len(group.indexes):
            continue
        deltas = {
            c: (kept.deltas[c] if kept is not None else 0) - group.deltas[c] for c in LEDGER_COLUMNS
        }
        back.append({"account_id": group.account_id, "env": group.env, "n": 0, "now": 0, **deltas})
    return back


def _times(
    groups: list[_Group], last: dict[tuple[int, str], int], results: list[Result | None]
) -> dict[int, int]:
    """Each item's ``time_ms`` from its row's new ``last_ms``: the group's n
    milliseconds end there, in the batch's order; those of refused items
    (``results`` not None) go unused."""
    times: dict[int, int] = {}
    for group in groups:
        end = last.get((group.account_id, group.env))
        if end is None:
            raise LookupError(f"no ledger for account {group.account_id} {group.env}")
        first = end - len(group.indexes) + 1
        for offset, i in enumerate(group.indexes):
            if results[i] is None:
                times[i] = first + offset
    return dict(sorted(times.items()))


def _allocate(
    conn: Connection, groups: list[_Group], now: int, results: list[Result | None]
) -> dict[int, int]:
    """SQLite: update the ledger rows (totals and clock) of the items to
    write; each item's ``time_ms``."""
    rows = _ledger_rows(groups, now)
    params = {
        f"{name}{g}": row[name] for g, row in enumerate(rows) for name, _ in sql.LEDGER_FIELDS
    }
    updated = sql.sqlite_rows(conn, sql.ledger_sqlite(len(groups)), params)
    return _times(groups, {(r[0], r[1]): r[2] for r in updated}, results)


class _Customers:
    """One customer per email (case-insensitive) per account and environment:
    each item's customer and the customer as its answer shows it; the
    customers to onboard and to rename."""

    def __init__(
        self,
        items: Sequence[Pending],
        wanted: dict[Slot, list[int]],
        known: dict[Slot, _Customer],
        times: dict[int, int],
    ) -> None:
        self.found = known
        self.of_item: dict[int, tuple[_Customer, dict[str, Any]]] = {}
        for slot, indexes in wanted.items():
            customer = known.get(slot)
            if customer is None:
                first = items[indexes[0]].new
                assert first.customer_email is not None
                customer = known[slot] = _Customer(
                    None,
                    new_customer_id(),
                    first.customer_email,
                    first.customer_name,
                    first.customer_name,
                    True,
                    times[indexes[0]],
                )
            customer.key = slot[2]
            # In the order of their times, as if written one after another:
            # a name renames the customer for this impact and the ones after.
            for i in indexes:
                name = items[i].new.customer_name
                if name is not None:
                    customer.name = name
                self.of_item[i] = (
                    customer,
                    _customer_out(customer.customer_id, customer.email, customer.name),
                )
        self.slots = wanted

    def new_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "customer_id": c.customer_id,
                "account_id": slot[0],
                "env": slot[1],
                "email": c.email,
                "email_key": slot[2],
                "name": c.name,
                "onboarded_ms": c.onboarded_ms,
            }
            for slot in self.slots
            if (c := self.found[slot]).new
        ]

    def renames(self) -> list[dict[str, Any]]:
        return [
            {"pk": c.pk, "name": c.name}
            for slot in self.slots
            if not (c := self.found[slot]).new and c.name != c.first_name
        ]

    def insert_sqlite(self, conn: Connection, impact_rows: list[dict[str, Any]]) -> None:
        """Onboard and rename (SQLite), and give the impacts their customers' ids."""
        rows = self.new_rows()
        if rows:
            pks = dict(
                sql.sqlite_insert(
                    conn, "customers", sql.CUSTOMER_COLUMNS, rows, returning="customer_id, id"
                )
            )
            for slot in self.slots:
                customer = self.found[slot]
                if customer.new:
                    customer.pk = pks[customer.customer_id]
            for row in impact_rows:
                if row["customer_key"] is not None and row["customer_pk"] is None:
                    slot = (row["account_id"], row["env"], row["customer_key"])
                    row["customer_pk"] = self.found[slot].pk
        renames = self.renames()
        if renames:
            conn.execute(
                _RENAME_CUSTOMER, [{"p_pk": r["pk"], "p_name": r["name"]} for r in renames]
            )


def _customer_out(customer_id: str, email: str, name: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"customer_id": customer_id, "customer_email": email}
    if name is not None:
        out["customer_name"] = name
    return out


def add_daily(session: Session, rows: dict[tuple[int, str, str], dict[str, int]]) -> None:
    """Add amounts to the daily series, one upsert per (account, env, day)."""
    if not rows:
        return
    conn = session.connection()
    daily = [
        {"account_id": a, "env": e, "day": d, **amounts}
        for (a, e, d), amounts in sorted(rows.items())
    ]
    if conn.dialect.name == "sqlite":
        sql.sqlite_insert(conn, "daily_impacts", sql.DAILY_COLUMNS, daily, suffix=sql.DAILY_ADD)
    else:
        conn.execute(sql.daily_upsert(conn.dialect.name), daily)
