"""Batches for the same accounts, written at once by several connections,
lock the accounts' rows in one order (budget caps, then ledgers, each by
account and environment: sql.BUDGETS_PG, openimpact_add_to_ledgers) and so
wait for each other instead of deadlocking, whatever the order of their
items; and the ledgers' totals and clocks come out as the records say."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from openimpact.accounts.models import Ledger
from openimpact.auth import Caller
from openimpact.db import Database
from openimpact.impacts.batch import NewImpact, Pending, write_batch
from openimpact.impacts.models import Impact
from openimpact.timeutil import now_ms
from tests.impacts.platform import callers, cap, price_trees

ACCOUNTS = 4
WRITERS = 4
BATCHES = 15  # per writer


def _callers(db: Database, capped: bool) -> list[Caller]:
    price_trees(db)
    return callers(
        db, range(ACCOUNTS), "order.example", (lambda s, _, a: cap(s, a)) if capped else None
    )


def _tree(amount: int) -> NewImpact:
    return NewImpact(
        impact_type="tree_planted", amount=amount, category=None, customer_email=None,
        customer_name=None, notify=None, metadata=None,
    )  # fmt: skip


@pytest.mark.parametrize("capped", [False, True], ids=["ledgers", "budgets-and-ledgers"])
def test_concurrent_batches_for_the_same_accounts_never_deadlock(
    own_database: Database, capped: bool
) -> None:
    """Without budget caps the ledgers are the first rows a batch locks; with
    them, the caps are, and the ledgers after."""
    db = own_database
    callers = _callers(db, capped)
    errors: list[BaseException] = []
    start = threading.Barrier(WRITERS)

    def writer(n: int) -> None:
        # Each writer names the accounts in its own order, and the order
        # turns from batch to batch.
        order = callers[n % ACCOUNTS :] + callers[: n % ACCOUNTS]
        if n % 2:
            order.reverse()
        try:
            start.wait()
            for b in range(BATCHES):
                items = [Pending(caller, _tree(1 + (b % 3))) for caller in order]

                def write(session: Session, items: list[Pending] = items) -> Any:
                    return write_batch(session, items, now=now_ms())

                results = db.run_sync(write, write=True)
                assert all(getattr(r, "status", None) == 200 for r in results), results
                order = order[1:] + order[:1]
        except BaseException as exc:  # reported by the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []

    def totals(session: Session) -> dict[int, tuple[int, int, int, int]]:
        ledgers = {
            row.account_id: (row.user_tree_planted, row.last_ms)
            for row in session.execute(select(Ledger).where(Ledger.env == "production")).scalars()
        }
        records = session.execute(
            select(
                Impact.account_id, func.sum(Impact.amount), func.count(), func.max(Impact.time_ms)
            )
            .where(Impact.env == "production")
            .group_by(Impact.account_id)
        ).all()
        return {
            account: (ledgers[account][0], int(total), ledgers[account][1], int(last))
            for account, total, count, last in records
            if count == WRITERS * BATCHES
        }

    seen = db.run_sync(totals)
    assert len(seen) == ACCOUNTS
    for tree_total, recorded, last_ms, newest in seen.values():
        assert tree_total == recorded
        assert last_ms == newest
