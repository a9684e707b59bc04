"""A demo account with a little activity, for ``openimpact serve --demo``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, literal, select
from sqlalchemy.orm import Session

from openimpact.accounts.models import Account
from openimpact.accounts.service import create_account
from openimpact.auth import Caller
from openimpact.db import Database
from openimpact.impacts.models import STAGES, Impact
from openimpact.impacts.service import NewImpact, record_impact
from openimpact.lifecycle.service import STEPS, CompleteOptions, advance, new_batch_id
from openimpact.timeutil import ms_to_iso, now_ms

_ACTIVITY = [
    ("tree_planted", 25, None, None, None),
    ("tree_planted", 10, "food", "jane@example.com", "Jane Doe"),
    ("waste_removed", 40, None, "sam@example.com", "Sam Lee"),
    ("carbon_captured", 120, None, None, None),
    ("coral_restored", 6, None, "jane@example.com", None),
    ("money_donated", 500, None, None, None),
]
# How far each production impact above has come (in order), so the demo shows
# every stage of the lifecycle and finished certificates.
_PRODUCTION_STAGES = [
    "completed",
    "completed",
    "transferred",
    "donation_received",
    "completed",
    "initiated",
]


def create_demo(db: Database) -> dict[str, Any] | None:
    """Create the demo account unless the store already has an account."""

    def create(session: Session) -> dict[str, Any] | None:
        if session.scalar(select(Account.id).limit(1)) is not None:
            return None
        account, keys = create_account(session, email="demo@openimpact.local", name="Demo Shop")
        for env in ("sandbox", "production"):
            caller = Caller(account.id, account.user_id, account.email, account.name, env, "")
            for impact_type, amount, category, email, name in _ACTIVITY:
                record_impact(
                    session,
                    caller,
                    NewImpact(
                        impact_type, amount, category, email, name, False, {"source": "demo"}
                    ),
                )
            if env == "production":
                completed = _spread_over_stages(session, account.id)
        return {
            "user_id": account.user_id,
            "sandbox_key": keys["sandbox"].key,
            "production_key": keys["production"].key,
            "completed_tracking_id": f"{account.user_id}-{ms_to_iso(completed)}",
        }

    return db.run_sync(create, write=True)


def _spread_over_stages(session: Session, account_id: int) -> int:
    """Advance the production impacts; returns the time of the first completed one."""
    rows = session.execute(
        select(Impact.id, Impact.time_ms)
        .where(Impact.account_id == account_id, Impact.env == "production")
        .order_by(Impact.id)
    ).all()
    ids = [row[0] for row in rows]
    batch_id = new_batch_id("demo")
    for step in STEPS.values():
        due = [
            impact_id
            for impact_id, target in zip(ids, _PRODUCTION_STAGES, strict=True)
            if STAGES.index(target) >= step.number
        ]
        advance(
            session,
            step,
            due,
            stamp=literal(now_ms(), BigInteger),
            actor="demo",
            batch_id=batch_id,
            options=CompleteOptions(),
        )
    return int(rows[_PRODUCTION_STAGES.index("completed")][1])
