"""The impact writer finds a batch's customers by their email, and the reads
find a customer by email, with one seek of the customers' unique index
each, with or without planner statistics: a
fresh PostgreSQL database, or one whose autovacuum is off, has none
(sql.FIND_CUSTOMERS_PG says why the plain equalities were not enough).

What the lookup read is counted as tests/reads.py counts."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import Connection, insert, select, text

from openimpact import sql
from openimpact.accounts.service import create_account
from openimpact.customers import service as customers
from openimpact.customers.models import Customer
from openimpact.db import Database, table
from tests.reads import reads

CUSTOMERS = 3_000
_customers = table(Customer)


def _account(db: Database, label: str) -> int:
    def create(session: Any) -> int:
        account, _ = create_account(session, email=f"{label}@lookup.example", name=label)
        return int(account.id)

    return db.run_sync(create, write=True)


def _onboard(db: Database, account_id: int, emails: list[str]) -> None:
    rows = [
        {
            "customer_id": f"C{account_id:04d}{n:08d}",
            "account_id": account_id,
            "env": "production",
            "email": email,
            "email_key": email.lower(),
            "name": None,
            "onboarded_ms": 1_000 + n,
        }
        for n, email in enumerate(emails)
    ]
    db.run_sync(lambda s: s.execute(insert(_customers), rows), write=True)


Slot = tuple[int, str, str]  # account id, environment, email key


def _find(conn: Connection, slots: list[Slot]) -> dict[Slot, str]:
    """The customer id of each slot found, as the writer looks them up."""
    if conn.dialect.name == "postgresql":
        params = {"p_slots": orjson.dumps([{"a": a, "e": e, "k": k} for a, e, k in slots]).decode()}
        (rows,) = sql.pg_pipeline(conn, [(sql.FIND_CUSTOMERS_PG, params)])
    else:
        params = {"p_slots": orjson.dumps(slots).decode()}
        rows = sql.sqlite_rows(conn, sql.FIND_CUSTOMERS_SQLITE, params)
    return {(row[0], row[1], row[2]): row[4] for row in rows}


def _find_each(conn: Connection, slots: list[Slot]) -> dict[Slot, str]:
    """The same, one query a slot, as the reads look a customer up by email
    (customers.service.by_email)."""
    found: dict[Slot, str] = {}
    for slot in slots:
        customer = customers.by_email(*slot)
        row = conn.execute(
            select(customer.c.account_id, customer.c.env, customer.c.customer_id)
        ).one_or_none()
        if row is not None:
            found[(row[0], row[1], slot[2])] = row[2]
    return found


LOOKUPS = {"writer": _find, "reads": _find_each}


def _counted(db: Database, slots: list[Slot], lookup: str) -> tuple[dict[Slot, str], int]:
    """What a lookup of ``slots`` found, and what it read of customers."""
    find = LOOKUPS[lookup]
    return reads(db, "customers", lambda session: find(session.connection(), slots))


@pytest.mark.parametrize("lookup", list(LOOKUPS))
@pytest.mark.parametrize("analyzed", [False, True], ids=["fresh", "analyzed"])
def test_each_customer_is_one_seek_whatever_the_statistics(
    own_database: Database, analyzed: bool, lookup: str
) -> None:
    db = own_database
    shop = _account(db, "shop")
    neighbour = _account(db, "neighbour")
    emails = [f"Buyer{n:05d}@Shop.example" for n in range(CUSTOMERS)]
    _onboard(db, shop, emails)
    # Keys just after the shop's own in the index: a miss must not be taken
    # for the next entry, which is another account's.
    _onboard(db, neighbour, ["buyer99999@shop.example", "zed@shop.example"])
    if analyzed:
        # Statistics as autovacuum gathers them (SQLite's: sqlite_stat1).
        db.run_sync(lambda s: s.execute(text("ANALYZE")), write=True)

    newest = [e.lower() for e in emails[-16:]]
    missing = ["buyer99999@shop.example", "zed@shop.example", "buyer00000a@shop.example"]
    slots = [(shop, "production", key) for key in [*newest, *missing]]
    found, read = _counted(db, slots, lookup)

    assert found == {
        (shop, "production", key): f"C{shop:04d}{CUSTOMERS - 16 + n:08d}"
        for n, key in enumerate(newest)
    }
    # One index entry and one row per customer found, at most one entry per
    # miss; a scan of the account's customers would read thousands each.
    # SQLite counts steps of its virtual machine: about 20 per seek, and
    # about 40 more for each statement of its own (the reads' one at a time).
    bound = (40 if lookup == "writer" else 100) if db.is_sqlite else 3
    per_slot = read / len(slots)
    assert per_slot <= bound, f"read {read} for {len(slots)} lookups"


@pytest.mark.parametrize("lookup", list(LOOKUPS))
def test_a_customer_of_another_environment_or_account_is_not_found(
    own_database: Database, lookup: str
) -> None:
    db = own_database
    shop = _account(db, "shop")
    other = _account(db, "other")
    _onboard(db, other, ["ann@shop.example"])
    found, _ = _counted(
        db,
        [
            (shop, "production", "ann@shop.example"),
            (other, "sandbox", "ann@shop.example"),
            (other, "production", "ann@shop.example"),
        ],
        lookup,
    )
    assert found == {(other, "production", "ann@shop.example"): f"C{other:04d}{0:08d}"}
