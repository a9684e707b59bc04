"""A batch of impact writes reads the rows of its own accounts only, however
many accounts the platform has: their ledgers, API keys, budget caps and
months, and the customers it renames, each found by a seek of its index.

Joined to a list unpacked from JSON (which PostgreSQL's planner takes for
100 rows), a table is hashed against the list and scanned whole: every
ledger and API key of the platform read by every batch, under the ledger
locks (sql.accounts_of). So a batch is measured on a small platform, the
platform grows by hundreds of accounts, and the same batch for the same
accounts must read no more. What a batch read is counted as tests/reads.py
counts: on PostgreSQL per table, on SQLite in steps of its virtual machine."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.orm import Session

from openimpact.auth import Caller
from openimpact.budgets.models import BudgetMonth
from openimpact.budgets.service import month_of
from openimpact.customers.models import Customer
from openimpact.db import Database, table
from openimpact.impacts.batch import NewImpact, Pending, request_hash, write_batch
from openimpact.timeutil import now_ms
from tests.impacts.platform import callers, cap, price_trees
from tests.reads import reads

IN_BATCH = 8  # accounts of the measured batch
GROWTH = 300  # accounts added to the platform between the two measurements
TABLES = ("ledgers", "api_keys", "budgets", "budget_months", "customers", "idempotency_keys")


def _shop(session: Session, n: int, account_id: int) -> None:
    """A budget cap, this month's spend and a customer named "Old"."""
    cap(session, account_id)
    session.execute(
        insert(table(BudgetMonth)),
        {"account_id": account_id, "env": "production", "month": month_of(now_ms()),
         "spent_cents": 0},
    )  # fmt: skip
    session.execute(
        insert(table(Customer)),
        {"customer_id": f"C{n:012d}", "account_id": account_id, "env": "production",
         "email": f"buyer@shop{n}.example", "email_key": f"buyer@shop{n}.example",
         "name": "Old", "onboarded_ms": 1_000 + n},
    )  # fmt: skip


def _accounts(db: Database, first: int, count: int) -> list[Caller]:
    return callers(db, range(first, first + count), "grow.example", _shop)


def _batch(shops: list[Caller], round_: str) -> list[Pending]:
    """Two impacts per account: one renames its customer, one onboards a new
    one; each with its own Idempotency-Key and its key confirmed."""
    items = []
    for n, caller in enumerate(shops):
        shop = caller.user_id
        for email, name in (
            (f"buyer@shop{n}.example", f"New {round_}"),
            (f"{round_}@x.example", None),
        ):
            body: dict[str, Any] = {"amount": 1, "customer_email": email, "customer_name": name}
            new = NewImpact(
                impact_type="tree_planted", amount=1, category=None, customer_email=email,
                customer_name=name, notify=None, metadata=None,
            )  # fmt: skip
            key = f"{round_}-{shop}-{email}"
            items.append(
                Pending(caller, new, key, request_hash("/v1/plant_tree", body), confirm_key=True)
            )
    return items


def _read(db: Database, items: list[Pending]) -> dict[str, int]:
    """What writing ``items`` (rolled back after) read: of each table on
    PostgreSQL, in all on SQLite."""

    def write(session: Session) -> None:
        results = write_batch(session, items, now=now_ms())
        assert all(getattr(r, "status", None) == 200 for r in results), results

    if db.is_sqlite:
        return {"all": reads(db, "", write)[1]}
    return {name: reads(db, name, write)[1] for name in TABLES}


@pytest.mark.parametrize("accounts_in_batch", [1, IN_BATCH], ids=["one-account", "accounts"])
@pytest.mark.parametrize("analyzed", [False, True], ids=["fresh", "analyzed"])
def test_a_batch_reads_no_more_on_a_larger_platform(
    own_database: Database, analyzed: bool, accounts_in_batch: int
) -> None:
    db = own_database
    price_trees(db)
    shops = _accounts(db, 0, IN_BATCH)[:accounts_in_batch]
    if analyzed:
        db.run_sync(lambda s: s.execute(text("ANALYZE")), write=True)
    small = _read(db, _batch(shops, "small"))

    _accounts(db, IN_BATCH, GROWTH)
    if analyzed:
        # Statistics as autovacuum gathers them (SQLite's: sqlite_stat1).
        db.run_sync(lambda s: s.execute(text("ANALYZE")), write=True)
    large = _read(db, _batch(shops, "large"))

    # A scan of a table would read at least one entry more per account added
    # (PostgreSQL: each ledger and API key row; SQLite: several steps each).
    for name, before in small.items():
        assert large[name] <= before + before // 4 + 8, (name, small, large)
