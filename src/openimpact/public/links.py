"""Customer page links: ``/my-impact/{token}``, one per production customer.

A token is 24 random bytes (192 bits, 32 URL-safe characters), made the first
time someone asks for the link (the dashboard, or the worker writing an
email), so recording an impact stays the statements it was. Rotating replaces
it: the old link is a 404 from that commit on. See models.CustomerPage for why
it is stored as it is.

This module depends on tables only, so the notifications domain can use it
without importing the pages.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from openimpact.customers.models import Customer
from openimpact.db import rowcount, table
from openimpact.public.models import CustomerPage
from openimpact.timeutil import now_ms

_pages = table(CustomerPage)
_customers = table(Customer)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32}$")


def new_token() -> str:
    return secrets.token_urlsafe(24)


def customer_page_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/my-impact/{token}"


def tokens_for(session: Session, customer_pks: Sequence[int]) -> dict[int, str]:
    """The page token of each customer, made for those that have none yet."""
    wanted = sorted(set(customer_pks))
    if not wanted:
        return {}
    found: dict[int, str] = dict(
        session.execute(
            select(_pages.c.customer_pk, _pages.c.token).where(_pages.c.customer_pk.in_(wanted))
        ).all()
    )
    for pk in wanted:
        if pk in found:
            continue
        token = new_token()
        try:
            with session.begin_nested():
                session.execute(
                    insert(_pages).values(customer_pk=pk, token=token, created_ms=now_ms())
                )
            found[pk] = token
        except IntegrityError:
            # Another worker made this customer's token first: use theirs. (No
            # row means the conflict was on the random token itself: retry.)
            existing = session.scalar(select(_pages.c.token).where(_pages.c.customer_pk == pk))
            found[pk] = existing if existing is not None else rotate(session, pk)
    return found


def rotate(session: Session, customer_pk: int) -> str:
    """Give the customer a new token; the old link stops working."""
    token = new_token()
    changed = session.execute(
        update(_pages)
        .where(_pages.c.customer_pk == customer_pk)
        .values(token=token, created_ms=now_ms())
    )
    if rowcount(changed) == 0:
        try:
            with session.begin_nested():
                session.execute(
                    insert(_pages).values(customer_pk=customer_pk, token=token, created_ms=now_ms())
                )
        except IntegrityError:
            session.execute(
                update(_pages)
                .where(_pages.c.customer_pk == customer_pk)
                .values(token=token, created_ms=now_ms())
            )
    return token


def customer_by_token(session: Session, token: str) -> int | None:
    """The production customer whose page this token opens, or None."""
    if not _TOKEN.match(token):
        return None
    return session.scalar(
        select(_pages.c.customer_pk)
        .join(_customers, _customers.c.id == _pages.c.customer_pk)
        .where(_pages.c.token == token, _customers.c.env == "production")
    )
