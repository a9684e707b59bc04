"""Schedules: their rules, and the pass that creates each due period's impact.

A period is the month (UTC) a schedule's impact belongs to; its impact is due
on ``day_of_month`` of that month. A period is created when it is due
(``due <= as_of``), its due day is within ``[not_before, ends_on]`` and not
older than :data:`CATCH_UP_DAYS` before ``as_of``. Pausing skips the months
while paused: resuming sets ``not_before`` to the day of the resume.

Exactly once: a period's row (unique per schedule and period) is inserted in
the same transaction as its impact (impacts/batch.py), so of two workers, or
two passes, the second finds the row and creates nothing; a crash before the
commit leaves neither. A late period's impact is created now (``time_utc``
stays unique and increasing) and carries its period.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from openimpact import sql
from openimpact.accounts.models import Account
from openimpact.auth import Caller
from openimpact.db import Database, table
from openimpact.errors import NotFound, OpenImpactError, ValidationFailed
from openimpact.impacts.batch import NewImpact, Pending, write_batch
from openimpact.kit import parse_day
from openimpact.outbox import service as outbox
from openimpact.pagination import CursorCodec, fingerprint
from openimpact.schedules.models import Schedule, SchedulePeriod
from openimpact.schedules.schemas import ScheduleCreate, SchedulePatch, check_amount
from openimpact.timeutil import day_of, ms_to_iso, now_ms, parse_iso_ms

log = logging.getLogger(__name__)

# How far back a pass creates missed periods: a server down for up to three
# months catches up completely; older periods are not created.
CATCH_UP_DAYS = 92
_periods = table(SchedulePeriod)


def today() -> date:
    """Today in UTC, the calendar schedules run on."""
    return date.fromisoformat(day_of(now_ms()))


def _day(name: str, value: str | None) -> date | None:
    return parse_day(name, value)


def _allowed_causes(session: Session, account_id: int) -> list[str]:
    return session.scalar(select(Account.causes).where(Account.id == account_id)) or ["trees"]


def _check_cause(session: Session, caller: Caller, impact_type: str, category: str | None) -> None:
    if impact_type != "money_donated" or category is None:
        return
    causes = _allowed_causes(session, caller.account_id)
    if category not in causes:
        raise ValidationFailed(
            f"category: '{category}' is not a cause configured for this account; "
            f"allowed: {', '.join(causes)}"
        )


def create_schedule(session: Session, caller: Caller, body: ScheduleCreate) -> dict[str, Any]:
    starts = _day("starts_on", body.starts_on)
    ends = _day("ends_on", body.ends_on)
    assert starts is not None
    if ends is not None and ends < starts:
        raise ValidationFailed("ends_on: must not be before starts_on")
    _check_cause(session, caller, body.impact_type, body.category)
    now = now_ms()
    schedule = Schedule(
        schedule_id="S" + secrets.token_hex(8),
        account_id=caller.account_id,
        env=caller.env,
        impact_type=body.impact_type,
        amount=body.amount,
        category=body.category,
        customer_email=body.customer_email,
        customer_name=body.customer_name,
        meta=body.metadata or None,
        day_of_month=body.day_of_month,
        starts_on=starts.isoformat(),
        ends_on=ends.isoformat() if ends else None,
        # Periods due before the schedule existed are not created: it starts
        # with the first one due from today on.
        not_before=max(starts, today()).isoformat(),
        status="active",
        created_ms=now,
        updated_ms=now,
    )
    session.add(schedule)
    session.flush()
    return schedule_out(schedule, today())


def find_schedule(session: Session, caller: Caller, schedule_id: str) -> Schedule:
    """The caller's own schedule, or the same 404 for another's or none."""
    found = session.scalar(
        select(Schedule).where(
            Schedule.schedule_id == schedule_id,
            Schedule.account_id == caller.account_id,
            Schedule.env == caller.env,
            Schedule.deleted_ms.is_(None),
        )
    )
    if found is None:
        raise NotFound("no schedule with this id")
    return found


def update_schedule(
    session: Session, caller: Caller, schedule_id: str, patch: SchedulePatch
) -> dict[str, Any]:
    schedule = find_schedule(session, caller, schedule_id)
    fields = patch.model_fields_set
    day = today()
    if "amount" in fields:
        if patch.amount is None:
            raise ValidationFailed("amount: must be a whole number of at least 1")
        try:
            check_amount(schedule.impact_type, patch.amount)
        except ValueError as exc:
            raise ValidationFailed(str(exc)) from None
        schedule.amount = patch.amount
    if "ends_on" in fields:
        ends = _day("ends_on", patch.ends_on)
        if ends is not None and ends < date.fromisoformat(schedule.starts_on):
            raise ValidationFailed("ends_on: must not be before starts_on")
        schedule.ends_on = ends.isoformat() if ends else None
    if "status" in fields:
        if patch.status is None:
            raise ValidationFailed("status: must be active or paused")
        if schedule.status == "paused" and patch.status == "active":
            # The months while paused are skipped, not caught up.
            schedule.not_before = max(schedule.not_before, day.isoformat())
        schedule.status = patch.status
    schedule.updated_ms = now_ms()
    return schedule_out(
        schedule, day, made_periods(session, [schedule.id], day).get(schedule.id, frozenset())
    )


def delete_schedule(session: Session, caller: Caller, schedule_id: str) -> dict[str, Any]:
    schedule = find_schedule(session, caller, schedule_id)
    # Kept (deleted) so that the impacts it made still name it.
    schedule.deleted_ms = now_ms()
    return {"id": schedule.schedule_id, "deleted": True}


def list_schedules(
    session: Session, caller: Caller, limit: int, cursor: str | None, codec: CursorCodec
) -> tuple[list[dict[str, Any]], str | None]:
    scope = fingerprint("schedules", caller.account_id, caller.env)
    query = select(Schedule).where(
        Schedule.account_id == caller.account_id,
        Schedule.env == caller.env,
        Schedule.deleted_ms.is_(None),
    )
    if cursor is not None:
        (after,) = codec.decode(cursor, scope, 1)
        query = query.where(Schedule.id > after)
    rows = list(session.scalars(query.order_by(Schedule.id).limit(limit + 1)))
    page = rows[:limit]
    next_cursor = codec.encode(scope, [page[-1].id]) if len(rows) > limit and page else None
    day = today()
    made = made_periods(session, [s.id for s in page], day)
    return [schedule_out(s, day, made.get(s.id, frozenset())) for s in page], next_cursor


def _due(year: int, month: int, day_of_month: int) -> date:
    return date(year, month, day_of_month)


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def next_run(schedule: Schedule, today: date, made: frozenset[str] = frozenset()) -> date | None:
    """The due day of the next period still to be created, if any: from
    today (or the resume) on, skipping the periods ``made`` already."""
    if schedule.status != "active" or schedule.deleted_ms is not None:
        return None
    start = max(date.fromisoformat(schedule.not_before), today)
    year, month = start.year, start.month
    due = _due(year, month, schedule.day_of_month)
    while due < start or f"{year:04d}-{month:02d}" in made:
        year, month = _next_month(year, month)
        due = _due(year, month, schedule.day_of_month)
    if schedule.ends_on is not None and due > date.fromisoformat(schedule.ends_on):
        return None
    return due


def made_periods(
    session: Session, schedule_pks: list[int], today: date
) -> dict[int, frozenset[str]]:
    """The periods of this month on that were created already, per schedule."""
    made: dict[int, set[str]] = {}
    if schedule_pks:
        for pk, period in session.execute(
            select(SchedulePeriod.schedule_pk, SchedulePeriod.period).where(
                SchedulePeriod.schedule_pk.in_(schedule_pks),
                SchedulePeriod.period >= today.isoformat()[:7],
            )
        ):
            made.setdefault(pk, set()).add(period)
    return {pk: frozenset(periods) for pk, periods in made.items()}


def due_periods(schedule: Schedule, as_of: date) -> list[str]:
    """The periods (YYYY-MM) due by ``as_of`` within the catch-up window, oldest first."""
    earliest = max(date.fromisoformat(schedule.not_before), as_of - timedelta(days=CATCH_UP_DAYS))
    last = as_of
    if schedule.ends_on is not None:
        last = min(last, date.fromisoformat(schedule.ends_on))
    periods = []
    year, month = earliest.year, earliest.month
    while True:
        due = _due(year, month, schedule.day_of_month)
        if due > last:
            break
        if due >= earliest:
            periods.append(f"{year:04d}-{month:02d}")
        year, month = _next_month(year, month)
    return periods


def schedule_out(
    schedule: Schedule, today: date, made: frozenset[str] = frozenset()
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": schedule.schedule_id,
        "status": schedule.status,
        "impact_type": schedule.impact_type,
        "amount": schedule.amount,
        "day_of_month": schedule.day_of_month,
        "starts_on": schedule.starts_on,
    }
    optional = {
        "ends_on": schedule.ends_on,
        "category": schedule.category,
        "customer_email": schedule.customer_email,
        "customer_name": schedule.customer_name,
        "metadata": schedule.meta,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    upcoming = next_run(schedule, today, made)
    if upcoming is not None:
        out["next_run_on"] = upcoming.isoformat()
        out["next_period"] = upcoming.isoformat()[:7]
    out["created_on"] = ms_to_iso(schedule.created_ms)
    out["updated_on"] = ms_to_iso(schedule.updated_ms)
    return out


# The pass -------------------------------------------------------------------


@dataclass(frozen=True)
class PassReport:
    created: int
    refused: int


def _claim(session: Session, schedule_pk: int, period: str, now: int) -> int | None:
    """The period's row, inserted now, or None when it exists already."""
    return sql.insert_once(
        session.connection(),
        _periods,
        ["schedule_pk", "period"],
        {"schedule_pk": schedule_pk, "period": period, "created_ms": now},
    )


def _caller(session: Session, schedule: Schedule) -> Caller:
    account = session.get(Account, schedule.account_id)
    assert account is not None
    return Caller(account.id, account.user_id, account.email, account.name, schedule.env, "")


def create_period(
    session: Session,
    schedule_pk: int,
    period: str,
    now: int,
    events: outbox.Events = outbox.Events(),
) -> str | None:
    """Create one period's impact in the session's transaction: "created",
    "refused" (the reason is kept with the period), or None when another pass
    made it already."""
    # Locked: a pause or a delete committing meanwhile is seen, not overtaken.
    schedule = session.get(Schedule, schedule_pk, with_for_update=True)
    if schedule is None or schedule.deleted_ms is not None or schedule.status != "active":
        return None
    period_pk = _claim(session, schedule_pk, period, now)
    if period_pk is None:
        return None
    new = NewImpact(
        impact_type=schedule.impact_type,
        amount=schedule.amount,
        category=schedule.category,
        customer_email=schedule.customer_email,
        customer_name=schedule.customer_name,
        notify=None,
        metadata=schedule.meta,
        schedule_id=schedule.schedule_id,
        period=period,
    )
    (result,) = write_batch(
        session, [Pending(_caller(session, schedule), new)], now=now, events=events
    )
    row = session.get(SchedulePeriod, period_pk)
    assert row is not None
    if isinstance(result, OpenImpactError):
        row.refused = f"{result.type}: {result.message}"
        return "refused"
    row.time_ms = _time_ms(result.body["time_utc"])
    return "created"


def _time_ms(time_utc: str) -> int:
    value = parse_iso_ms(time_utc)
    assert value is not None
    return value


def run_due(
    db: Database,
    as_of: date | None = None,
    *,
    now: int | None = None,
    account_id: int | None = None,
    events: outbox.Events = outbox.Events(),
) -> PassReport:
    """One pass over every active schedule (of one account, when given): each
    due period in a transaction of its own, so a refusal or a crash touches one
    period only."""
    now = now if now is not None else now_ms()
    as_of = as_of or date.fromisoformat(day_of(now))

    def candidates(session: Session) -> list[tuple[int, list[str]]]:
        query = select(Schedule).where(
            Schedule.status == "active",
            Schedule.deleted_ms.is_(None),
            Schedule.not_before <= as_of.isoformat(),
        )
        if account_id is not None:
            query = query.where(Schedule.account_id == account_id)
        schedules = session.scalars(query)
        wanted = [(s.id, due_periods(s, as_of)) for s in schedules]
        wanted = [(pk, periods) for pk, periods in wanted if periods]
        if not wanted:
            return []
        made = {
            (row[0], row[1])
            for row in session.execute(
                select(SchedulePeriod.schedule_pk, SchedulePeriod.period).where(
                    SchedulePeriod.schedule_pk.in_([pk for pk, _ in wanted])
                )
            )
        }
        return [(pk, [p for p in periods if (pk, p) not in made]) for pk, periods in wanted]

    created = refused = 0
    for schedule_pk, periods in db.run_sync(candidates):
        for period in periods:
            try:
                outcome = db.run_sync(create_period, schedule_pk, period, now, events, write=True)
            except Exception:  # this period only: the next pass tries it again
                log.exception("schedule %s, period %s failed", schedule_pk, period)
                break
            created += outcome == "created"
            refused += outcome == "refused"
    return PassReport(created, refused)
