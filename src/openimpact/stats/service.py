"""Totals and the daily series, read from running aggregates (never a scan)."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from openimpact.accounts.models import Ledger
from openimpact.auth import Caller
from openimpact.db import table
from openimpact.impacts.models import DailyImpact
from openimpact.kit import RECORD_KEYS


def totals(session: Session, caller: Caller) -> dict[str, Any]:
    ledger = session.get(Ledger, (caller.account_id, caller.env))
    user = {k: getattr(ledger, f"user_{k}") if ledger else 0 for k in RECORD_KEYS}
    customer = {k: getattr(ledger, f"customer_{k}") if ledger else 0 for k in RECORD_KEYS}
    body: dict[str, Any] = {"user_id": caller.user_id}
    body.update({k: user[k] + customer[k] for k in RECORD_KEYS})
    body["user_impact"] = user
    body["customer_impact"] = customer
    return body


def daily(session: Session, caller: Caller, start: date | None, end: date | None) -> dict[str, Any]:
    d = table(DailyImpact)
    stmt = (
        select(d.c.day, *(d.c[k] for k in RECORD_KEYS))
        .where(d.c.account_id == caller.account_id, d.c.env == caller.env)
        # A day whose impacts were all cancelled had no activity left.
        .where(or_(*(d.c[k] != 0 for k in RECORD_KEYS)))
        .order_by(d.c.day)
    )
    if start is not None:
        stmt = stmt.where(d.c.day >= start.isoformat())
    if end is not None:
        stmt = stmt.where(d.c.day <= end.isoformat())
    series = [
        {"date": row[0], **{k: row[i + 1] for i, k in enumerate(RECORD_KEYS)}}
        for row in session.execute(stmt)
    ]
    return {"user_id": caller.user_id, "daily_impact": series}
