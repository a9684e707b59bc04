"""Accounts made straight in the database for the writer's tests of many
accounts (test_batch_reads, test_ledger_order): their callers, as a request's
key would give them, and the rows a budget cap needs."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sqlalchemy import insert
from sqlalchemy.orm import Session

from openimpact.accounts.service import create_account, hash_key
from openimpact.auth import Caller, _lookup
from openimpact.budgets.models import Budget, ImpactPrice
from openimpact.db import Database, table


def callers(
    db: Database,
    numbers: Iterable[int],
    domain: str,
    also: Callable[[Session, int, int], None] | None = None,
) -> list[Caller]:
    """An account per number (``shop<n>@<domain>``), with ``also(session,
    number, account id)`` run for each in the same transaction: the callers
    of their production keys, in order."""

    def create(session: Session) -> list[str]:
        keys = []
        for n in numbers:
            account, made = create_account(session, email=f"shop{n}@{domain}", name=f"S{n}")
            keys.append(made["production"].key)
            if also is not None:
                also(session, n, account.id)
        return keys

    return [db.run_sync(_lookup, hash_key(key)) for key in db.run_sync(create, write=True)]


def cap(session: Session, account_id: int) -> None:
    """A monthly cap of production far above what a test spends."""
    session.execute(
        insert(table(Budget)),
        {"account_id": account_id, "env": "production", "monthly_cents": 10**9, "updated_ms": 0},
    )


def price_trees(db: Database) -> None:
    """A unit price for trees, which a capped account's impacts need."""
    db.run_sync(
        lambda s: s.execute(
            insert(table(ImpactPrice)),
            {"impact_type": "tree_planted", "unit_cents": 50, "updated_ms": 0},
        ),
        write=True,
    )
