from __future__ import annotations

from typing import Any

from sqlalchemy import Subquery, and_, func, or_, select, tuple_
from sqlalchemy.orm import Session

from openimpact.auth import Caller
from openimpact.customers.models import Customer
from openimpact.db import table
from openimpact.errors import NotFound
from openimpact.impacts.models import Impact
from openimpact.kit import RECORD_KEYS
from openimpact.pagination import CursorCodec, fingerprint
from openimpact.timeutil import ms_to_iso


def by_email(account_id: int, env: str, email_key: str) -> Subquery:
    """The customer of this account and environment whose email key (the
    address in lower case) is ``email_key``: at most one row, with every
    column of customers. Sought as the writer seeks its batch's customers
    (sql.FIND_CUSTOMERS_PG): the first entry at or after the triple in the
    unique index, kept only if it is that triple, so that PostgreSQL without
    planner statistics does not filter every customer of the account."""
    c = table(Customer)
    first = (
        select(c)
        .where(tuple_(c.c.account_id, c.c.env, c.c.email_key) >= tuple_(account_id, env, email_key))
        .order_by(c.c.account_id, c.c.env, c.c.email_key)
        .limit(1)
        .subquery()
    )
    return (
        select(first)
        .where(first.c.account_id == account_id, first.c.env == env, first.c.email_key == email_key)
        .subquery("customer")
    )


def list_customers(
    session: Session,
    caller: Caller,
    email: str | None,
    limit: int,
    cursor: str | None,
    descending: bool,
    codec: CursorCodec,
) -> tuple[list[dict[str, Any]], str | None]:
    scope = fingerprint(
        "customers", caller.account_id, caller.env, (email or "").lower(), descending
    )
    # With an email, the list is that one customer or none.
    c = table(Customer) if email is None else by_email(caller.account_id, caller.env, email.lower())
    stmt = select(c.c.id, c.c.customer_id, c.c.email, c.c.name, c.c.onboarded_ms).where(
        c.c.account_id == caller.account_id, c.c.env == caller.env
    )
    if cursor is not None:
        after_ms, after_id = codec.decode(cursor, scope, 2)
        if descending:
            stmt = stmt.where(
                or_(
                    c.c.onboarded_ms < after_ms,
                    and_(c.c.onboarded_ms == after_ms, c.c.id < after_id),
                )
            )
        else:
            stmt = stmt.where(
                or_(
                    c.c.onboarded_ms > after_ms,
                    and_(c.c.onboarded_ms == after_ms, c.c.id > after_id),
                )
            )
    if descending:
        stmt = stmt.order_by(c.c.onboarded_ms.desc(), c.c.id.desc())
    else:
        stmt = stmt.order_by(c.c.onboarded_ms.asc(), c.c.id.asc())
    rows = session.execute(stmt.limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    out = []
    for r in rows:
        item: dict[str, Any] = {"customer_id": r.customer_id, "customer_email": r.email}
        if r.name is not None:
            item["customer_name"] = r.name
        item["onboarded_on"] = ms_to_iso(r.onboarded_ms)
        out.append(item)
    next_cursor = None
    if more:
        if rows:
            next_cursor = codec.encode(scope, [rows[-1].onboarded_ms, rows[-1].id])
        elif cursor is not None:
            next_cursor = cursor
        else:
            low = (2**62, 2**62) if descending else (-1, -1)
            next_cursor = codec.encode(scope, list(low))
    return out, next_cursor


# The dashboard's customer pages.


def search_customers(
    session: Session,
    caller: Caller,
    text: str | None,
    limit: int,
    cursor: str | None,
    codec: CursorCodec,
) -> tuple[list[dict[str, Any]], str | None]:
    """Customers whose email contains ``text`` (any case), newest first."""
    c = table(Customer)
    needle = (text or "").strip().lower()
    scope = fingerprint("customer_search", caller.account_id, caller.env, needle)
    stmt = select(c.c.id, c.c.customer_id, c.c.email, c.c.name, c.c.onboarded_ms).where(
        c.c.account_id == caller.account_id, c.c.env == caller.env
    )
    if needle:
        escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(c.c.email_key.like(f"%{escaped}%", escape="\\"))
    if cursor is not None:
        after_ms, after_id = codec.decode(cursor, scope, 2)
        stmt = stmt.where(
            or_(c.c.onboarded_ms < after_ms, and_(c.c.onboarded_ms == after_ms, c.c.id < after_id))
        )
    rows = session.execute(
        stmt.order_by(c.c.onboarded_ms.desc(), c.c.id.desc()).limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    out = [
        {
            "customer_id": r.customer_id,
            "customer_email": r.email,
            "customer_name": r.name,
            "onboarded_on": ms_to_iso(r.onboarded_ms),
        }
        for r in rows
    ]
    next_cursor = codec.encode(scope, [rows[-1].onboarded_ms, rows[-1].id]) if more else None
    return out, next_cursor


def customer_by_id(session: Session, caller: Caller, customer_id: str) -> Customer:
    """The caller's customer; another account's or environment's is the same 404."""
    customer = session.scalar(
        select(Customer).where(
            Customer.customer_id == customer_id,
            Customer.account_id == caller.account_id,
            Customer.env == caller.env,
        )
    )
    if customer is None:
        raise NotFound("no such customer")
    return customer


def customer_totals(session: Session, customer: Customer) -> dict[str, int]:
    """Lifetime totals of one customer, cancelled impacts excluded. A sum over
    the customer's own impacts (an index range): one customer has few."""
    i = table(Impact)
    totals = dict.fromkeys(RECORD_KEYS, 0)
    for impact_type, amount in session.execute(
        select(i.c.impact_type, func.sum(i.c.amount))
        .where(i.c.customer_pk == customer.id, i.c.cancelled_ms.is_(None))
        .group_by(i.c.impact_type)
    ):
        totals[impact_type] = int(amount or 0)
    return totals
