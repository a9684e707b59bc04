"""Large batches finish in bounded time, in atomic chunks, and report what they did."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import insert, select

from openimpact.accounts.models import Account
from openimpact.db import Database, table
from openimpact.impacts.models import Impact
from openimpact.kit import RECORD_KEYS
from openimpact.lifecycle.service import Selection, lifecycle_status, run_batch
from tests.factories import Api


def _bulk_impacts(db: Database, user_id: str, count: int) -> None:
    """``count`` production impacts of every type, one second apart, in one transaction."""
    impacts = table(Impact)

    def load(session: Any) -> None:
        account_id = session.scalar(select(Account.id).where(Account.user_id == user_id))
        base = 1_700_000_000_000
        rows = [
            {
                "account_id": account_id,
                "env": "production",
                "time_ms": base + i * 1000,
                "impact_type": RECORD_KEYS[i % len(RECORD_KEYS)],
                "amount": 1 + i % 7,
                "is_customer": False,
                "notify": False,
                "is_bonus": False,
                "stage": "initiated",
            }
            for i in range(count)
        ]
        for start in range(0, count, 10_000):
            session.execute(insert(impacts), rows[start : start + 10_000])

    db.run_sync(load, write=True)


def test_a_batch_of_thousands_in_chunks(api: Api) -> None:
    account = api.account()
    _bulk_impacts(api.db, account.user_id, 2_500)
    selection = Selection(user_id=account.user_id)

    dry = run_batch(api.db, "receive", selection, actor="test", dry_run=True, chunk_size=1000)
    assert (dry["matched"], dry["would_change"]) == (2_500, 2_500)
    assert dry["by_type"] == {key: 500 for key in sorted(RECORD_KEYS)}

    seen: list[int] = []
    report = run_batch(
        api.db,
        "receive",
        selection,
        actor="test",
        chunk_size=1000,
        on_chunk=lambda chunk: seen.append(chunk.changed),
    )
    assert report["changed"] == 2_500
    assert [c["changed"] for c in report["chunks"]] == seen == [1000, 1000, 500]

    transfer = run_batch(api.db, "transfer", selection, actor="test", chunk_size=1000)
    assert transfer["changed"] == 2_500
    assert sum(transfer["by_project"].values()) == 2_500
    assert transfer["by_project"]["mangroves-menabe-madagascar"] == 500
    assert transfer["by_project"]["atlantic-forest-ribeira-valley-brazil"] == 500  # donations

    again = run_batch(api.db, "transfer", selection, actor="test", dry_run=True)
    assert (again["would_change"], again["skipped"]) == (0, {"transferred": 2_500})


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_one_hundred_thousand_impacts(api: Api) -> None:
    account = api.account()
    count = 100_000
    _bulk_impacts(api.db, account.user_id, count)
    selection = Selection(user_id=account.user_id)

    started = time.monotonic()
    dry = run_batch(api.db, "receive", selection, actor="test", dry_run=True)
    assert dry["would_change"] == count
    report = run_batch(api.db, "receive", selection, actor="test")  # chunks of 1,000
    elapsed = time.monotonic() - started
    assert report["changed"] == count
    assert len(report["chunks"]) == 100
    assert all(chunk["changed"] == 1_000 for chunk in report["chunks"])
    assert elapsed < 60, f"a batch of {count:,} took {elapsed:.1f} s"
    status = api.db.run_sync(lifecycle_status, "production")
    received = next(s for s in status["stages"] if s["stage"] == "donation_received")
    assert received["total"] >= count
