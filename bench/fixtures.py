"""Read fixtures: accounts holding many impacts, bulk-loaded through the
database layer (Core executemany in large batches), not through HTTP.

For every size N two accounts are made, each holding exactly N production
impacts spread evenly over the past year:

- a *direct* account (impacts made by the organization itself), read through
  GET /v1/records, /v1/impact and /v1/impact/daily;
- a *customers* account (impacts on behalf of N/10 customers, and at least
  1000), read through GET /v1/customer_records.

Everything the write path keeps in step is written in step here too: the
customers, each day's row of the daily series, and the ledger's running totals
and clock, so the API reads the same as if every impact had been posted.
"""

from __future__ import annotations

import base64
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text, update

from bench.servers import new_account
from openimpact.accounts.models import Ledger
from openimpact.accounts.service import server_secret
from openimpact.customers.models import Customer
from openimpact.db import Database, table
from openimpact.impacts.models import DailyImpact, Impact
from openimpact.kit import RECORD_KEYS
from openimpact.timeutil import MS_PER_DAY, day_of, now_ms

BATCH = 20_000
ENV = "production"
# A plausible mix of impact kinds (trees dominate real traffic).
KINDS = ("tree_planted",) * 6 + RECORD_KEYS[1:]


@dataclass
class ReadAccount:
    size: int
    kind: str  # "direct" or "customers"
    account_id: int
    user_id: str
    key: str
    time_ms: list[int]  # every impact's time, ascending (for cursors)


def _certificate_ids(n: int) -> list[str]:
    # Random like the server's own (base32 of 15 random bytes), in one call.
    text = base64.b32encode(os.urandom(15 * n)).decode().lower()
    return [text[i * 24 : (i + 1) * 24] for i in range(n)]


def load_account(db: Database, size: int, kind: str) -> ReadAccount:
    account_id, user_id, key = new_account(db, f"{kind}{size}")
    end = (now_ms() // MS_PER_DAY) * MS_PER_DAY  # start of today, UTC
    start = end - 365 * MS_PER_DAY
    step = (end - start) // size
    times = [start + i * step + (i % 997) for i in range(size)]  # strictly increasing
    impacts = table(Impact)
    customers = table(Customer)
    on_behalf = kind == "customers"

    customer_pks: list[int] = []
    if on_behalf:
        # Ten impacts a customer on large accounts, and never fewer customers
        # than a 1000-record page holds, so that every account's pages name
        # 1000 different customers and pages of any account do the same work.
        n_customers = min(size, max(1000, size // 10))
        rows = [
            {
                "customer_id": f"C{account_id:04x}{i:012x}",
                "account_id": account_id,
                "env": ENV,
                "email": f"shopper{i}@example.com",
                "email_key": f"shopper{i}@example.com",
                "name": f"Shopper {i}" if i % 2 else None,
                "onboarded_ms": times[i * (size // n_customers)],
            }
            for i in range(n_customers)
        ]
        with db.engine.begin() as conn:
            for b in range(0, len(rows), BATCH):
                conn.execute(customers.insert(), rows[b : b + BATCH])
            customer_pks = list(
                conn.scalars(
                    select(customers.c.id)
                    .where(customers.c.account_id == account_id)
                    .order_by(customers.c.onboarded_ms, customers.c.id)
                )
            )

    totals: dict[str, int] = defaultdict(int)
    daily: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(RECORD_KEYS, 0))
    day_names: dict[int, str] = {}
    with db.engine.begin() as conn:
        for b in range(0, size, BATCH):
            count = min(BATCH, size - b)
            certificates = _certificate_ids(count)
            batch: list[dict[str, Any]] = []
            for j in range(count):
                i = b + j
                impact_type = KINDS[i % len(KINDS)]
                amount = 1 + i % 25
                totals[impact_type] += amount
                day = (times[i] - start) // MS_PER_DAY
                if day not in day_names:
                    day_names[day] = day_of(times[i])
                daily[day_names[day]][impact_type] += amount
                batch.append(
                    {
                        "account_id": account_id,
                        "env": ENV,
                        "time_ms": times[i],
                        "impact_type": impact_type,
                        "amount": amount,
                        "category": None,
                        "cause": "trees" if impact_type == "money_donated" else None,
                        "customer_pk": customer_pks[i % len(customer_pks)] if on_behalf else None,
                        "is_customer": on_behalf,
                        "metadata": {"order_id": f"ord-{i}"} if i % 3 == 0 else None,
                        "notify": on_behalf,
                        "is_bonus": False,
                        "certificate_id": certificates[j],
                        "stage": "initiated",
                    }
                )
            conn.execute(impacts.insert(), batch)
        daily_table = table(DailyImpact)
        conn.execute(
            daily_table.insert(),
            [{"account_id": account_id, "env": ENV, "day": d, **v} for d, v in daily.items()],
        )
        prefix = "customer_" if on_behalf else "user_"
        ledger = table(Ledger)
        conn.execute(
            update(ledger)
            .where(ledger.c.account_id == account_id, ledger.c.env == ENV)
            .values(last_ms=times[-1], **{prefix + k: v for k, v in totals.items()})
        )
    return ReadAccount(size, kind, account_id, user_id, key, times)


def load_all(db: Database, sizes: list[int]) -> list[ReadAccount]:
    accounts = [load_account(db, size, kind) for size in sizes for kind in ("direct", "customers")]
    # Statistics as a long-running server would have them (autovacuum on
    # PostgreSQL keeps them fresh on its own); SQLite is left as the server
    # leaves it, since nothing there runs ANALYZE.
    if not db.is_sqlite:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    # The cursor secret the server will sign cursors with (it reads the same
    # row at start-up), so the bench can place a cursor deep in a listing.
    db.run_sync(server_secret, "cursor", write=True)
    return accounts
