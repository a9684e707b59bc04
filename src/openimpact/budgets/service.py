"""Monthly budget caps: prices, spend, the check in the write path, the
emails at 80 % and 100 %.

The cost of an impact is its amount times its type's unit price (US cents;
``money_donated`` is 1 cent per cent unless the operator sets otherwise; a type
with no price costs nothing). A month is a calendar month in UTC.

Spend is kept per account, environment and month once the account and
environment have a budget; setting a budget counts the month's spend so far
from the records. In the write path (impacts/batch.py) the budget rows of a
batch are locked first, then each impact is checked in order: one that would
take the month past the cap creates nothing and gets a 402, so concurrent
writes never take the spend past it. Bonus impacts cost nothing. A
cancellation gives its cost back to the month it was spent in.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson
from sqlalchemy import case, delete, func, select, update
from sqlalchemy.orm import Session

from openimpact import sql
from openimpact.accounts.models import Account, Ledger
from openimpact.auth import Caller
from openimpact.budgets.models import Budget, BudgetMonth, ImpactPrice
from openimpact.db import table
from openimpact.errors import OpenImpactError, ValidationFailed
from openimpact.impacts.models import Impact
from openimpact.kit import RECORD_KEYS
from openimpact.outbox import service as outbox
from openimpact.timeutil import day_of, day_start_ms, now_ms
from openimpact.users.models import User

DEFAULT_UNIT_CENTS = {"money_donated": 1}
WARN_AT = 0.8
MAX_MONTHLY_CENTS = 10**13

_months = table(BudgetMonth)


class BudgetExceeded(OpenImpactError):
    type = "budget_exceeded"
    status = 402


_EVENTS = {
    "budget_threshold": outbox.BUDGET_THRESHOLD_REACHED,
    "budget_exceeded": outbox.BUDGET_EXCEEDED,
}


def dollars(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def month_of(ms: int) -> str:
    return day_of(ms)[:7]


def resets_on(month: str) -> date:
    year, mon = int(month[:4]), int(month[5:7])
    return date(year + 1, 1, 1) if mon == 12 else date(year, mon + 1, 1)


def _month_bounds(month: str) -> tuple[int, int]:
    year, mon = int(month[:4]), int(month[5:7])
    return day_start_ms(date(year, mon, 1)), day_start_ms(resets_on(month))


# Prices -----------------------------------------------------------------------


def unit_prices(session: Session) -> dict[str, int]:
    prices = dict(DEFAULT_UNIT_CENTS)
    for impact_type, cents in session.execute(
        select(ImpactPrice.impact_type, ImpactPrice.unit_cents)
    ):
        prices[impact_type] = cents
    return prices


def set_prices(session: Session, prices: dict[str, int]) -> dict[str, int]:
    for impact_type, cents in prices.items():
        if impact_type not in RECORD_KEYS:
            raise ValidationFailed(
                f"prices: '{impact_type}' is not one of {', '.join(RECORD_KEYS)}"
            )
        if not 0 <= cents <= 10**9:
            raise ValidationFailed(f"prices: {impact_type} must be 0 to 1,000,000,000 cents")
        row = session.get(ImpactPrice, impact_type)
        if row is None:
            session.add(ImpactPrice(impact_type=impact_type, unit_cents=cents, updated_ms=now_ms()))
        else:
            row.unit_cents, row.updated_ms = cents, now_ms()
    session.flush()
    return unit_prices(session)


def cost_of(prices: dict[str, int], impact_type: str, amount: int) -> int:
    return prices.get(impact_type, 0) * amount


# Budgets ------------------------------------------------------------------------


def lock_budget(session: Session, account_id: int, env: str) -> None:
    """Wait for the writers of the account's budget (a cancel takes this lock
    before the ledger's, in the order the write path takes them)."""
    session.execute(
        select(Budget.account_id)
        .where(Budget.account_id == account_id, Budget.env == env)
        .with_for_update()
    ).all()


def set_budget(
    session: Session, account_id: int, env: str, monthly_cents: int | None, now: int | None = None
) -> None:
    """Set (or with None remove) the monthly cap. A new budget counts the
    month's spend so far from the records, and stamps their cost at today's
    prices; removing one forgets the spend, which a new budget counts again."""
    now = now if now is not None else now_ms()
    if monthly_cents is not None and not 1 <= monthly_cents <= MAX_MONTHLY_CENTS:
        raise ValidationFailed("monthly_cents: must be a whole number of cents, at least 1")
    # Writers of this account and environment wait until this commits, so
    # none counts against a budget that is half set; the locks are taken in
    # the write path's order (the budget's, then the ledger's).
    lock_budget(session, account_id, env)
    session.execute(
        select(Ledger.account_id)
        .where(Ledger.account_id == account_id, Ledger.env == env)
        .with_for_update()
    ).all()
    budget = session.get(Budget, (account_id, env))
    if monthly_cents is None:
        if budget is not None:
            session.delete(budget)
            session.execute(
                delete(BudgetMonth).where(
                    BudgetMonth.account_id == account_id, BudgetMonth.env == env
                )
            )
            session.flush()
        return
    if budget is None:
        session.add(
            Budget(account_id=account_id, env=env, monthly_cents=monthly_cents, updated_ms=now)
        )
    else:
        budget.monthly_cents, budget.updated_ms = monthly_cents, now
    month = month_of(now)
    if session.get(BudgetMonth, (account_id, env, month)) is None:
        session.add(
            BudgetMonth(
                account_id=account_id,
                env=env,
                month=month,
                spent_cents=_count_month(session, account_id, env, month),
            )
        )
    session.flush()


def _count_month(session: Session, account_id: int, env: str, month: str) -> int:
    """The month's spend from its records: stamps each impact's cost (those
    written without a budget have none yet), then adds them up."""
    start, end = _month_bounds(month)
    mine = (
        Impact.account_id == account_id,
        Impact.env == env,
        Impact.time_ms >= start,
        Impact.time_ms < end,
        Impact.is_bonus.is_(False),
    )
    for impact_type, cents in unit_prices(session).items():
        session.execute(
            update(Impact)
            .where(*mine, Impact.impact_type == impact_type, Impact.cost_cents.is_(None))
            .values(cost_cents=Impact.amount * cents)
        )
    spent = session.scalar(
        select(func.coalesce(func.sum(Impact.cost_cents), 0)).where(
            *mine, Impact.cancelled_ms.is_(None)
        )
    )
    return int(spent or 0)


@dataclass(frozen=True)
class BudgetView:
    month: str
    monthly_cents: int | None
    spent_cents: int | None
    resets_on: date
    projected_cents: int | None

    @property
    def remaining_cents(self) -> int | None:
        if self.monthly_cents is None or self.spent_cents is None:
            return None
        return max(0, self.monthly_cents - self.spent_cents)

    @property
    def close(self) -> bool:
        """At 80 % of the cap or more: the dashboard's banner."""
        return (
            self.monthly_cents is not None
            and self.spent_cents is not None
            and self.spent_cents >= WARN_AT * self.monthly_cents
        )

    def event_data(self) -> dict[str, Any]:
        """The data of a ``budget.*`` event."""
        return {
            "month": self.month,
            "monthly_cents": self.monthly_cents,
            "spent_cents": self.spent_cents,
            "remaining_cents": self.remaining_cents,
            "resets_on": self.resets_on.isoformat(),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "month": self.month,
            "monthly_cents": self.monthly_cents,
            "spent_cents": self.spent_cents,
            "remaining_cents": self.remaining_cents,
            "projected_cents": self.projected_cents,
            "resets_on": self.resets_on.isoformat(),
        }


def budget_view(session: Session, account_id: int, env: str, now: int | None = None) -> BudgetView:
    now = now if now is not None else now_ms()
    month = month_of(now)
    budget = session.get(Budget, (account_id, env))
    if budget is None:
        return BudgetView(month, None, None, resets_on(month), None)
    row = session.get(BudgetMonth, (account_id, env, month))
    spent = row.spent_cents if row is not None else 0
    # The month's pace so far, carried to its end.
    today = date.fromisoformat(day_of(now))
    days = calendar.monthrange(today.year, today.month)[1]
    elapsed = max(1.0, (now - day_start_ms(today.replace(day=1))) / 86_400_000)
    projected = round(spent / elapsed * days)
    return BudgetView(month, budget.monthly_cents, spent, resets_on(month), projected)


# In the write path ---------------------------------------------------------------------------


@dataclass
class _Cap:
    monthly_cents: int
    spent: int
    warned: bool
    exceeded: bool
    refused: bool = False


def budget_lookup(
    dialect_name: str, groups: Iterable[tuple[int, str]]
) -> tuple[Any, dict[str, Any]]:
    """The statement that reads (and, on PostgreSQL, locks) the budget caps of
    ``groups`` (account id, environment), with its parameters."""
    ordered = sorted(groups)
    if dialect_name == "postgresql":
        payload = orjson.dumps([{"a": a, "e": e} for a, e in ordered]).decode()
        return sql.BUDGETS_PG, {"p_rows": payload}
    return sql.BUDGETS_SQLITE, {"p_rows": orjson.dumps(ordered).decode()}


def check_caps(
    session: Session,
    items: Sequence[Any],
    results: list[Any],
    groups: set[tuple[int, str]],
    now: int,
    *,
    events: bool = True,
    budgets: Sequence[Sequence[Any]] | None = None,
) -> dict[int, int]:
    """Refuse (402) each item that would take its month past its cap, in
    order; the cost of every other item of a capped account. Writes the
    months' spend and queues the owners' emails. ``budgets``: the rows of
    :func:`budget_lookup` for these ``groups`` or more, when the caller read
    them already."""
    conn = session.connection()
    month = month_of(now)
    statement, params = budget_lookup(conn.dialect.name, groups)
    months = sql.MONTHS_PG if conn.dialect.name == "postgresql" else sql.MONTHS_SQLITE
    if budgets is None:
        budgets = (
            list(conn.execute(statement, params))
            if conn.dialect.name == "postgresql"
            else sql.sqlite_rows(conn, statement, params)
        )
    caps = {(r[0], r[1]): _Cap(r[2], 0, False, False) for r in budgets if (r[0], r[1]) in groups}
    if not caps:
        return {}
    payload = params["p_rows"]
    for r in conn.execute(months, {"p_rows": payload, "p_month": month}):
        found = caps[(r[0], r[1])]
        found.spent, found.warned, found.exceeded = r[2], r[3] is not None, r[4] is not None
    prices = unit_prices(session)
    costs: dict[int, int] = {}
    for i, item in enumerate(items):
        if results[i] is not None:
            continue
        cap = caps.get((item.caller.account_id, item.caller.env))
        if cap is None or item.new.is_bonus:
            continue
        cost = cost_of(prices, item.new.impact_type, item.new.amount)
        if cap.spent + cost > cap.monthly_cents:
            cap.refused = True
            results[i] = BudgetExceeded(
                f"monthly budget of {dollars(cap.monthly_cents)} ({item.caller.env}) would be "
                f"exceeded: {dollars(cap.spent)} spent in {month}, this impact costs "
                f"{dollars(cost)}; nothing was created. The budget resets on "
                f"{resets_on(month).isoformat()}"
            )
            continue
        cap.spent += cost
        costs[i] = cost
    for (account_id, env), cap in caps.items():
        _record(session, account_id, env, month, cap, now, events)
    return costs


def _record(
    session: Session, account_id: int, env: str, month: str, cap: _Cap, now: int, events: bool
) -> None:
    warn = not cap.warned and cap.spent >= WARN_AT * cap.monthly_cents
    exceeded = not cap.exceeded and (cap.refused or cap.spent >= cap.monthly_cents)
    session.connection().execute(
        sql.budget_month_upsert(session.connection().dialect.name),
        {
            "account_id": account_id,
            "env": env,
            "month": month,
            "spent_cents": cap.spent,
            "warned_ms": now if warn or cap.warned else None,
            "exceeded_ms": now if exceeded or cap.exceeded else None,
        },
    )
    for template, due in (("budget_threshold", warn), ("budget_exceeded", exceeded)):
        if due:
            _email_owners(session, account_id, env, template, month, cap, now)
            if events:
                data = BudgetView(month, cap.monthly_cents, cap.spent, resets_on(month), None)
                outbox.enqueue(
                    session,
                    [outbox.event(_EVENTS[template], account_id, env, data.event_data(), now)],
                )


def _email_owners(
    session: Session, account_id: int, env: str, template: str, month: str, cap: _Cap, now: int
) -> None:
    account = session.get(Account, account_id)
    owners = session.scalars(
        select(User.email).where(User.account_id == account_id, User.role == "owner")
    ).all()
    facts = {
        "template": template,
        "account_name": account.name if account else "",
        "env": env,
        "month": month,
        "monthly_cents": cap.monthly_cents,
        "spent_cents": cap.spent,
        "resets_on": resets_on(month).isoformat(),
    }
    outbox.enqueue(
        session,
        [outbox.message("email", account_id, env, {**facts, "to": email}, now) for email in owners],
    )


def give_back(session: Session, impact: Impact) -> None:
    """A cancelled impact's cost, back to the month it was spent in (the
    caller holds the budget's lock: see lock_budget)."""
    if impact.is_bonus or not impact.cost_cents:
        return
    month = month_of(impact.time_ms)
    session.execute(
        update(BudgetMonth)
        .where(
            BudgetMonth.account_id == impact.account_id,
            BudgetMonth.env == impact.env,
            BudgetMonth.month == month,
        )
        .values(
            spent_cents=case(
                (
                    BudgetMonth.spent_cents > impact.cost_cents,
                    BudgetMonth.spent_cents - impact.cost_cents,
                ),
                else_=0,
            )
        )
    )


def caller_budget(session: Session, caller: Caller) -> dict[str, Any]:
    return budget_view(session, caller.account_id, caller.env).to_json()
