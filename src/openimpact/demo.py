"""A demo account with a little activity, for ``openimpact serve --demo``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from openimpact.accounts.models import Account
from openimpact.accounts.service import create_account
from openimpact.auth import Caller
from openimpact.db import Database
from openimpact.impacts.service import NewImpact, record_impact

_ACTIVITY = [
    ("tree_planted", 25, None, None, None),
    ("tree_planted", 10, "food", "jane@example.com", "Jane Doe"),
    ("waste_removed", 40, None, "sam@example.com", "Sam Lee"),
    ("carbon_captured", 120, None, None, None),
    ("coral_restored", 6, None, "jane@example.com", None),
    ("money_donated", 500, None, None, None),
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
                    NewImpact(impact_type, amount, category, email, name, False, {"source": "demo"}),
                )
        return {
            "user_id": account.user_id,
            "sandbox_key": keys["sandbox"].key,
            "production_key": keys["production"].key,
        }

    return db.run_sync(create, write=True)
