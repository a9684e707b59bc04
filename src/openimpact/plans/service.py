"""Plans: the operator's named sets of monthly bonus impacts, and the pass
that grants them.

Each month (UTC) an account on a plan receives the plan's bonus impacts once,
in production, as impacts with ``is_bonus_impact: true`` on track: counted in
the totals like any other impact and costing nothing against a budget. The
month's row (unique per account and month) is written in the transaction that
creates its impacts, so of several workers one grants it; the bonus of a month
is granted by the first pass in that month after the account is on the plan.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from openimpact import sql
from openimpact.accounts.models import Account
from openimpact.auth import Caller
from openimpact.db import Database, table
from openimpact.errors import NotFound, OpenImpactError, ValidationFailed
from openimpact.impacts.batch import NewImpact, Pending, write_batch
from openimpact.impacts.schemas import MAX_CENTS, MAX_UNITS
from openimpact.kit import RECORD_KEYS
from openimpact.outbox import service as outbox
from openimpact.plans.models import Plan, PlanPeriod
from openimpact.timeutil import day_of, now_ms

log = logging.getLogger(__name__)
_periods = table(PlanPeriod)
BONUS_ENV = "production"


def parse_bonuses(pairs: list[str]) -> dict[str, int]:
    """``["tree_planted=50", ...]`` as {"tree_planted": 50}."""
    bonuses: dict[str, int] = {}
    for pair in pairs:
        kind, sep, amount = pair.partition("=")
        kind = kind.strip()
        if not sep or kind not in RECORD_KEYS:
            raise ValidationFailed(
                f"bonus: '{pair[:60]}' must be TYPE=AMOUNT with TYPE one of {', '.join(RECORD_KEYS)}"
            )
        try:
            value = int(amount.strip())
        except ValueError:
            raise ValidationFailed(f"bonus: the amount of {kind} must be a whole number") from None
        limit = MAX_CENTS if kind == "money_donated" else MAX_UNITS
        if not 1 <= value <= limit:
            raise ValidationFailed(f"bonus: {kind} must be 1 to {limit:,}")
        bonuses[kind] = value
    return bonuses


def plan_out(plan: Plan) -> dict[str, Any]:
    return {"name": plan.name, "bonuses": dict(plan.bonuses)}


def create_plan(session: Session, name: str, bonuses: dict[str, int]) -> dict[str, Any]:
    name = " ".join(name.split())
    if not 1 <= len(name) <= 80:
        raise ValidationFailed("name: must be 1 to 80 characters")
    if not bonuses:
        raise ValidationFailed("bonus: a plan needs at least one bonus impact")
    if session.scalar(select(Plan.id).where(Plan.name_key == name.lower())) is not None:
        raise ValidationFailed(f"name: a plan named {name} exists already")
    plan = Plan(name=name, name_key=name.lower(), bonuses=bonuses, created_ms=now_ms())
    session.add(plan)
    session.flush()
    return plan_out(plan)


def list_plans(session: Session) -> list[dict[str, Any]]:
    return [plan_out(p) for p in session.scalars(select(Plan).order_by(Plan.name_key))]


def find_plan(session: Session, name: str) -> Plan:
    plan = session.scalar(select(Plan).where(Plan.name_key == " ".join(name.split()).lower()))
    if plan is None:
        raise NotFound(f"no plan named {name}")
    return plan


def assign_plan(session: Session, account: Account, name: str | None) -> dict[str, Any] | None:
    """Put the account on the plan (None: on none)."""
    if name is None:
        account.plan_id = None
        return None
    plan = find_plan(session, name)
    account.plan_id = plan.id
    return plan_out(plan)


def plan_of(session: Session, account_id: int) -> dict[str, Any] | None:
    account = session.get(Account, account_id)
    if account is None or account.plan_id is None:
        return None
    plan = session.get(Plan, account.plan_id)
    return plan_out(plan) if plan is not None else None


def _claim(session: Session, account_id: int, period: str, plan_id: int, now: int) -> bool:
    values = {"account_id": account_id, "period": period, "plan_id": plan_id, "created_ms": now}
    return (
        sql.insert_once(session.connection(), _periods, ["account_id", "period"], values)
        is not None
    )


def grant_month(
    session: Session,
    account_id: int,
    period: str,
    now: int,
    events: outbox.Events = outbox.Events(),
) -> int:
    """The month's bonus impacts of one account, once: how many were created."""
    account = session.get(Account, account_id)
    if account is None or account.plan_id is None:
        return 0
    plan = session.get(Plan, account.plan_id)
    if plan is None or not _claim(session, account.id, period, plan.id, now):
        return 0
    caller = Caller(account.id, account.user_id, account.email, account.name, BONUS_ENV, "")
    items = [
        Pending(
            caller,
            NewImpact(kind, amount, None, None, None, None, None, is_bonus=True, period=period),
        )
        for kind, amount in sorted(plan.bonuses.items())
    ]
    results = write_batch(session, items, now=now, events=events)
    failed = [r for r in results if isinstance(r, OpenImpactError)]
    if failed:  # a bonus has no reason to be refused: keep the month unclaimed
        raise failed[0]
    return len(results)


def grant_bonuses(
    db: Database,
    as_of: date | None = None,
    *,
    now: int | None = None,
    account_id: int | None = None,
    events: outbox.Events = outbox.Events(),
) -> int:
    """One pass: every account on a plan that has not had this month's bonus."""
    now = now if now is not None else now_ms()
    period = (as_of.isoformat() if as_of else day_of(now))[:7]

    def due(session: Session) -> list[int]:
        query = select(Account.id).where(Account.plan_id.is_not(None))
        if account_id is not None:
            query = query.where(Account.id == account_id)
        granted = select(PlanPeriod.account_id).where(PlanPeriod.period == period)
        return list(session.scalars(query.where(Account.id.not_in(granted))))

    created = 0
    for account in db.run_sync(due):
        try:
            created += db.run_sync(grant_month, account, period, now, events, write=True)
        except Exception:  # this account only: the next pass tries it again
            log.exception("bonus of account %s for %s failed", account, period)
    return created
