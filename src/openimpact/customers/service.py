from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from openimpact.auth import Caller
from openimpact.customers.models import Customer
from openimpact.db import table
from openimpact.pagination import CursorCodec, fingerprint
from openimpact.timeutil import ms_to_iso


def list_customers(
    session: Session,
    caller: Caller,
    email: str | None,
    limit: int,
    cursor: str | None,
    descending: bool,
    codec: CursorCodec,
) -> tuple[list[dict[str, Any]], str | None]:
    c = table(Customer)
    scope = fingerprint(
        "customers", caller.account_id, caller.env, (email or "").lower(), descending
    )
    stmt = select(c.c.id, c.c.customer_id, c.c.email, c.c.name, c.c.onboarded_ms).where(
        c.c.account_id == caller.account_id, c.c.env == caller.env
    )
    if email is not None:
        stmt = stmt.where(c.c.email_key == email.lower())
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
