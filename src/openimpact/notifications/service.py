"""Outbox messages: what an email says, and the bookkeeping of each attempt.

A message is written in the same transaction as the impact it reports
(``impacts/service.py``); the worker delivers it later (``worker.py``):

    due ──claim (lease)──▶ sending ──ok──▶ delivered_ms
                               └──error──▶ next_attempt_ms = now + backoff
                                           … after MAX_ATTEMPTS: failed_ms

A claim is a conditional UPDATE on ``next_attempt_ms``, so of several workers
exactly one sends a given attempt; a worker that dies while sending lets the
lease run out and the message is tried again (at-least-once).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from openimpact.accounts.models import Account
from openimpact.certificates.render import describe_impact
from openimpact.db import rowcount, table
from openimpact.kit import RECORD_KEYS
from openimpact.notifications.models import OutboxMessage

MAX_ATTEMPTS = 8
BASE_BACKOFF_SECONDS = 30
MAX_BACKOFF_SECONDS = 3600
LEASE_SECONDS = 300
NO_SMTP = "no SMTP server configured"

_outbox = table(OutboxMessage)


def backoff_ms(attempts: int) -> int:
    """Delay before the next try after ``attempts`` failed ones: 30 s, 60 s,
    120 s, ... capped at an hour."""
    return min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS * 2 ** max(0, attempts - 1)) * 1000


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    host: str
    port: int
    security: str  # "none" | "starttls" | "tls"
    username: str | None
    password: str | None


_SCHEMES = {"smtp": ("none", 25), "smtp+starttls": ("starttls", 587), "smtps": ("tls", 465)}


def parse_smtp_url(url: str) -> SmtpTarget:
    """``smtp://host:25``, ``smtp+starttls://user:pass@host:587`` or
    ``smtps://user:pass@host:465`` (user and password URL-encoded)."""
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise ValueError(
            "OPENIMPACT_SMTP_URL must look like smtp://host:25, "
            "smtp+starttls://user:pass@host:587 or smtps://user:pass@host:465"
        )
    security, default_port = _SCHEMES[parts.scheme]
    return SmtpTarget(
        host=parts.hostname,
        port=parts.port or default_port,
        security=security,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    attempts: int  # including this one
    payload: dict[str, Any]
    business_name: str


def fail_all_due(session: Session, now: int, reason: str) -> int:
    """Give up on every due email at once (no way to send any of them), so
    nothing piles up; the reason is recorded on each."""
    return rowcount(
        session.execute(
            update(_outbox)
            .where(
                _outbox.c.kind == "email",
                _outbox.c.delivered_ms.is_(None),
                _outbox.c.failed_ms.is_(None),
                _outbox.c.next_attempt_ms <= now,
            )
            .values(failed_ms=now, last_error=reason)
        )
    )


def claim_due(session: Session, now: int, limit: int) -> list[Claimed]:
    o = _outbox
    rows = session.execute(
        select(o.c.id, o.c.next_attempt_ms, o.c.attempts, o.c.payload, Account.name)
        .join(Account, Account.id == o.c.account_id, isouter=True)
        .where(
            o.c.kind == "email",
            o.c.delivered_ms.is_(None),
            o.c.failed_ms.is_(None),
            o.c.next_attempt_ms <= now,
        )
        .order_by(o.c.next_attempt_ms, o.c.id)
        .limit(limit)
    ).all()
    claimed = []
    for message_id, seen, attempts, payload, name in rows:
        won = session.execute(
            update(o)
            .where(
                o.c.id == message_id,
                o.c.next_attempt_ms == seen,
                o.c.delivered_ms.is_(None),
                o.c.failed_ms.is_(None),
            )
            .values(next_attempt_ms=now + LEASE_SECONDS * 1000, attempts=o.c.attempts + 1)
        )
        if rowcount(won) == 1:
            claimed.append(Claimed(message_id, attempts + 1, payload, name or "A business"))
    return claimed


def record_delivered(session: Session, message_id: int, now: int) -> None:
    session.execute(
        update(_outbox).where(_outbox.c.id == message_id).values(delivered_ms=now, last_error=None)
    )


def record_failure(session: Session, message: Claimed, now: int, error: str) -> None:
    values: dict[str, Any] = {"last_error": error[:1000]}
    if message.attempts >= MAX_ATTEMPTS:
        values["failed_ms"] = now
    else:
        values["next_attempt_ms"] = now + backoff_ms(message.attempts)
    session.execute(update(_outbox).where(_outbox.c.id == message.id).values(**values))


def compose_email(
    payload: dict[str, Any], business_name: str, mail_from: str, public_url: str | None
) -> EmailMessage:
    """The "impact created on your behalf" email to a customer (seed 001: notify)."""
    customer = payload.get("customer") or {}
    to = customer.get("customer_email")
    if not to:
        raise ValueError("the message names no customer email")
    impact_type = next((key for key in RECORD_KEYS if key in payload), None)
    if impact_type is None:
        raise ValueError("the message names no impact")
    what = describe_impact(impact_type, int(payload[impact_type]), payload.get("category"))
    tracking_id = f"{payload['user_id']}-{payload['time_utc']}"
    name = customer.get("customer_name")

    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = formataddr((name, to)) if name else to
    message["Subject"] = f"{business_name}: {what} on your behalf"
    lines = [
        f"Hello {name}," if name else "Hello,",
        "",
        f"{business_name} made an impact on your behalf: {what}.",
        "",
        "Every impact is tracked until the partner organization has completed it:",
        "Initiated → Donation Received → Transferred to Partner → Completed.",
        "",
        f"Tracking ID: {tracking_id}",
    ]
    if public_url:
        lines.append(f"Certificate: {public_url.rstrip('/')}/certificate/{tracking_id}")
    lines += ["", "Thank you!"]
    message.set_content("\n".join(lines) + "\n")
    return message
