"""Reading impacts: record pages (keyset), and the tracking view."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session

from openimpact.auth import Caller
from openimpact.customers import service as customers
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


_S = TypeVar("_S", bound="Select[Any]")


def _customer_pk(session: Session, caller: Caller, email: str) -> int | None:
    """The caller's customer with this email (any case), or None."""
    found = customers.by_email(caller.account_id, caller.env, email.strip().lower())
    return session.scalar(select(found.c.id))


def _narrowed(stmt: _S, types: tuple[str, ...], start: date | None, end: date | None) -> _S:
    """Impact types and whole UTC days (inclusive), as every list reads them."""
    t = _impacts
    if types:
        stmt = stmt.where(t.c.impact_type.in_(types))
    if start is not None:
        stmt = stmt.where(t.c.time_ms >= day_start_ms(start))
    if end is not None:
        stmt = stmt.where(t.c.time_ms < day_start_ms(end + timedelta(days=1)))
    return stmt


def _after(stmt: _S, position: int, descending: bool) -> _S:
    """The keyset step: rows past ``position`` in time order."""
    t = _impacts
    if descending:
        return stmt.where(t.c.time_ms < position).order_by(t.c.time_ms.desc())
    return stmt.where(t.c.time_ms > position).order_by(t.c.time_ms.asc())


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
        customer_pk = _customer_pk(session, caller, query.customer_email)
        if customer_pk is None:
            return [], None
        stmt = stmt.where(t.c.customer_pk == customer_pk)
    else:
        stmt = stmt.where(
            t.c.account_id == caller.account_id,
            t.c.env == caller.env,
            t.c.is_customer.is_(query.customers),
        )
    stmt = _after(
        _narrowed(stmt, query.filter_by, query.start, query.end), position, query.descending
    )

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


# Every impact of an account and environment, direct and on behalf of
# customers, for the dashboard's table and its CSV export. The same tenant
# filter as the API's record pages; keyset on the (account, env, time_ms)
# unique index, newest first by default.


@dataclass(frozen=True)
class ImpactQuery:
    types: tuple[str, ...] = ()
    start: date | None = None
    end: date | None = None
    customer_email: str | None = None
    stage: str | None = None
    status: str | None = None  # "active" | "cancelled" | None for both
    descending: bool = True
    limit: int = 50

    def scope(self, caller: Caller) -> str:
        return fingerprint(
            "impacts",
            caller.account_id,
            caller.env,
            sorted(self.types),
            self.start,
            self.end,
            (self.customer_email or "").lower(),
            self.stage,
            self.status,
            self.descending,
        )


@dataclass(frozen=True, slots=True)
class ImpactRow:
    time_ms: int
    tracking_id: str
    time_utc: str
    impact_type: str
    amount: int
    category: str | None
    stage: str
    cancelled_on: str | None
    cancellation_reason: str | None
    metadata: dict[str, Any] | None
    project_id: str | None
    certificate_id: str | None
    customer: dict[str, Any] | None


def impact_page(
    session: Session, caller: Caller, query: ImpactQuery, after: int | None
) -> tuple[list[ImpactRow], int | None]:
    """One page of impacts after the keyset position ``after`` (a time_ms), and
    the position of the next page (None on the last)."""
    t = _impacts
    stmt = select(
        t.c.time_ms,
        t.c.impact_type,
        t.c.amount,
        t.c.category,
        t.c.stage,
        t.c.cancelled_ms,
        t.c.cancellation_reason,
        t.c.metadata,
        t.c.project_id,
        t.c.donation_sent_ms,
        t.c.certificate_id,
        t.c.customer_pk,
    ).where(t.c.account_id == caller.account_id, t.c.env == caller.env)
    if query.customer_email:
        customer_pk = _customer_pk(session, caller, query.customer_email)
        if customer_pk is None:
            return [], None
        stmt = stmt.where(t.c.customer_pk == customer_pk)
    stmt = _narrowed(stmt, query.types, query.start, query.end)
    if query.stage is not None:
        stmt = stmt.where(t.c.stage == query.stage)
    if query.status == "cancelled":
        stmt = stmt.where(t.c.cancelled_ms.is_not(None))
    elif query.status == "active":
        stmt = stmt.where(t.c.cancelled_ms.is_(None))
    position = after if after is not None else (_HIGH if query.descending else _LOW)
    stmt = _after(stmt, position, query.descending)
    rows = session.execute(stmt.limit(query.limit + 1)).all()
    more = len(rows) > query.limit
    rows = rows[: query.limit]

    customers: dict[int, dict[str, Any]] = {}
    pks = list({r.customer_pk for r in rows if r.customer_pk is not None})
    if pks:
        for pk, customer_id, email, name in session.connection().execute(
            _CUSTOMERS_BY_PK, {"p_pks": pks}
        ):
            customers[pk] = {
                "customer_id": customer_id,
                "customer_email": email,
                "customer_name": name,
            }
    page = [
        ImpactRow(
            time_ms=r.time_ms,
            tracking_id=f"{caller.user_id}-{ms_to_iso(r.time_ms)}",
            time_utc=ms_to_iso(r.time_ms),
            impact_type=r.impact_type,
            amount=r.amount,
            category=r.category,
            stage=r.stage,
            cancelled_on=ms_to_iso(r.cancelled_ms) if r.cancelled_ms is not None else None,
            cancellation_reason=r.cancellation_reason,
            metadata=r.metadata or None,
            project_id=r.project_id if r.donation_sent_ms is not None else None,
            certificate_id=r.certificate_id,
            customer=customers.get(r.customer_pk) if r.customer_pk is not None else None,
        )
        for r in rows
    ]
    return page, (rows[-1].time_ms if more else None)


def list_impacts(
    session: Session, caller: Caller, query: ImpactQuery, cursor: str | None, codec: CursorCodec
) -> tuple[list[ImpactRow], str | None]:
    """A page of :func:`impact_page` behind an opaque cursor bound to the query."""
    scope = query.scope(caller)
    after = codec.decode(cursor, scope, 1)[0] if cursor else None
    rows, position = impact_page(session, caller, query, after)
    return rows, codec.encode(scope, [position]) if position is not None else None
