"""Reading impacts: record pages (keyset), and the tracking view."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from openimpact.auth import Caller
from openimpact.customers.models import Customer
from openimpact.db import table
from openimpact.impacts.models import Impact
from openimpact.pagination import CursorCodec, fingerprint
from openimpact.timeutil import day_start_ms, ms_to_iso

_impacts = table(Impact)
_customers = table(Customer)
_LOW = -1
_HIGH = 2**62
# Built once; the expanding parameter takes the page's customer keys as one
# bound list instead of a thousand literals compiled on every page (issue 4).
_CUSTOMERS_BY_PK = select(
    _customers.c.id, _customers.c.customer_id, _customers.c.email, _customers.c.name
).where(_customers.c.id.in_(bindparam("p_pks", expanding=True)))


@dataclass(frozen=True)
class RecordQuery:
    customers: bool  # customer_records instead of records
    filter_by: tuple[str, ...]
    start: date | None
    end: date | None
    limit: int
    descending: bool
    cursor: str | None
    customer_email: str | None = None

    def scope(self, caller: Caller) -> str:
        return fingerprint(
            "customer_records" if self.customers else "records",
            caller.account_id,
            caller.env,
            sorted(self.filter_by),
            self.start,
            self.end,
            self.descending,
            (self.customer_email or "").lower(),
        )


def list_records(
    session: Session, caller: Caller, query: RecordQuery, codec: CursorCodec
) -> tuple[list[dict[str, Any]], str | None]:
    scope = query.scope(caller)
    if query.cursor is not None:
        (position,) = codec.decode(query.cursor, scope, 1)
    else:
        position = _HIGH if query.descending else _LOW

    t = _impacts
    stmt = select(
        t.c.time_ms,
        t.c.impact_type,
        t.c.amount,
        t.c.category,
        t.c.metadata,
        t.c.cancelled_ms,
        t.c.customer_pk,
    )
    if query.customers and query.customer_email is not None:
        customer_pk = session.scalar(
            select(_customers.c.id).where(
                _customers.c.account_id == caller.account_id,
                _customers.c.env == caller.env,
                _customers.c.email_key == query.customer_email.lower(),
            )
        )
        if customer_pk is None:
            return [], None
        stmt = stmt.where(t.c.customer_pk == customer_pk)
    else:
        stmt = stmt.where(
            t.c.account_id == caller.account_id,
            t.c.env == caller.env,
            t.c.is_customer.is_(query.customers),
        )
    if query.filter_by:
        stmt = stmt.where(t.c.impact_type.in_(query.filter_by))
    if query.start is not None:
        stmt = stmt.where(t.c.time_ms >= day_start_ms(query.start))
    if query.end is not None:
        stmt = stmt.where(t.c.time_ms < day_start_ms(query.end + timedelta(days=1)))
    if query.descending:
        stmt = stmt.where(t.c.time_ms < position).order_by(t.c.time_ms.desc())
    else:
        stmt = stmt.where(t.c.time_ms > position).order_by(t.c.time_ms.asc())

    if query.limit == 0:
        exists = session.execute(stmt.limit(1)).first() is not None
        return [], codec.encode(scope, [position]) if exists else None

    rows = session.execute(stmt.limit(query.limit + 1)).all()
    more = len(rows) > query.limit
    rows = rows[: query.limit]

    customers: dict[int, dict[str, Any]] = {}
    if query.customers and rows:
        pks = list({r.customer_pk for r in rows})
        for pk, customer_id, email, name in session.connection().execute(
            _CUSTOMERS_BY_PK, {"p_pks": pks}
        ):
            info: dict[str, Any] = {"customer_id": customer_id, "customer_email": email}
            if name is not None:
                info["customer_name"] = name
            customers[pk] = info

    records = []
    for r in rows:
        record: dict[str, Any] = {"user_id": caller.user_id}
        if query.customers:
            record["customer"] = customers[r.customer_pk]
        record["time_utc"] = ms_to_iso(r.time_ms)
        record[r.impact_type] = r.amount
        if r.category is not None:
            record["category"] = r.category
        if r.metadata:
            record["metadata"] = r.metadata
        if r.cancelled_ms is not None:
            record["cancelled_on"] = ms_to_iso(r.cancelled_ms)
        records.append(record)
    cursor = codec.encode(scope, [rows[-1].time_ms]) if more else None
    return records, cursor
