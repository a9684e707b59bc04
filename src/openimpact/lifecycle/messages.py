"""The messages a lifecycle change writes to the outbox: the customer's
"your impact is completed" email (composed by notifications/ when sent), and
the event of each stage reached (delivered by webhooks/, listed by the feed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from openimpact.accounts.models import Account
from openimpact.customers.models import Customer
from openimpact.db import table
from openimpact.impacts.models import Impact
from openimpact.impacts.tracking import VIEW_COLUMNS, cause_labels, impact_view
from openimpact.outbox import service as outbox
from openimpact.timeutil import ms_to_iso

_impacts = table(Impact)
_customers = table(Customer)
_accounts = table(Account)


def queue_completion_emails(session: Session, impact_ids: Sequence[int], now: int) -> int:
    """Queue the "your impact is completed" email of each of ``impact_ids``
    whose ``notify`` is true (it is false in sandbox, and false when the
    first email was not wanted), in the caller's transaction: one SELECT and
    one multi-row INSERT per thousand impacts. Returns how many were queued."""
    i, c, a = _impacts, _customers, _accounts
    queued = 0
    ids = list(impact_ids)
    for start in range(0, len(ids), outbox.ROWS_PER_INSERT):
        rows = session.execute(
            select(
                i.c.account_id,
                i.c.env,
                i.c.time_ms,
                i.c.impact_type,
                i.c.amount,
                i.c.category,
                i.c.certificate_id,
                i.c.project_id,
                c.c.customer_id,
                c.c.email,
                c.c.name,
                a.c.user_id,
            )
            .join(c, c.c.id == i.c.customer_pk)
            .join(a, a.c.id == i.c.account_id)
            .where(i.c.id.in_(ids[start : start + outbox.ROWS_PER_INSERT]), i.c.notify.is_(True))
            .order_by(i.c.id)
        ).all()
        if not rows:
            continue
        messages = []
        for row in rows:
            customer: dict[str, Any] = {
                "customer_id": row.customer_id,
                "customer_email": row.email,
            }
            if row.name is not None:
                customer["customer_name"] = row.name
            payload: dict[str, Any] = {
                "template": outbox.IMPACT_COMPLETED,
                "user_id": row.user_id,
                row.impact_type: row.amount,
                "time_utc": ms_to_iso(row.time_ms),
                "customer": customer,
                "certificate_id": row.certificate_id,
                "project_id": row.project_id,
            }
            if row.category is not None:
                payload["category"] = row.category
            messages.append(outbox.message("email", row.account_id, row.env, payload, now))
        outbox.enqueue(session, messages)
        queued += len(messages)
    return queued


def queue_events(
    session: Session, impact_ids: Sequence[int], stage: str, now: int, events: outbox.Events
) -> int:
    """Queue the event of ``stage`` for each of ``impact_ids`` (the impact as
    track shows it now), in the caller's transaction: one SELECT and one
    multi-row INSERT per thousand impacts. Returns how many were queued."""
    i, a = _impacts, _accounts
    event_type = outbox.IMPACT_EVENTS[stage]
    base = events.certificate_base()
    ids = sorted(impact_ids)
    queued = 0
    for start in range(0, len(ids), outbox.ROWS_PER_INSERT):
        rows = session.execute(
            select(i.c.account_id, a.c.user_id, *(i.c[column] for column in VIEW_COLUMNS))
            .join(a, a.c.id == i.c.account_id)
            .where(i.c.id.in_(ids[start : start + outbox.ROWS_PER_INSERT]))
            .order_by(i.c.id)
        ).all()
        labels = cause_labels(session, [row.cause for row in rows])
        outbox.enqueue(
            session,
            [
                outbox.event(
                    event_type,
                    row.account_id,
                    row.env,
                    impact_view(
                        row._mapping,
                        row.user_id,
                        base,
                        labels.get(row.cause) if row.impact_type == "money_donated" else None,
                    ),
                    now,
                )
                for row in rows
            ],
        )
        queued += len(rows)
    return queued
