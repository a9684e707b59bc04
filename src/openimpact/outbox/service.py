"""Queueing outbox messages, and the bookkeeping of each delivery attempt.

    due ──claim (lease)──▶ sending ──ok──▶ delivered_ms
                               └──error──▶ next_attempt_ms = now + backoff
                                           … after max_attempts: failed_ms

A claim is a conditional UPDATE on ``next_attempt_ms``, so of several workers
exactly one sends a given attempt; a worker that dies while sending lets the
lease run out and the message is tried again (at-least-once). What a message
says and how it goes out belongs to its kind (notifications/ for emails).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from openimpact.accounts.models import Account
from openimpact.db import rowcount, table
from openimpact.outbox.models import OutboxMessage

# The customer emails the domains queue (notifications/ composes them).
IMPACT_CREATED = "impact_created"
IMPACT_COMPLETED = "impact_completed"

MAX_ATTEMPTS = 8
BASE_BACKOFF_SECONDS = 30
MAX_BACKOFF_SECONDS = 3600
LEASE_SECONDS = 300
# Rows per multi-row INSERT: 7 parameters each, well under SQLite's 32,766
# and PostgreSQL's 65,535 bound parameters per statement.
ROWS_PER_INSERT = 1000

_outbox = table(OutboxMessage)


def message(
    kind: str, account_id: int, env: str, payload: dict[str, Any], now: int
) -> dict[str, Any]:
    """One outbox row, due now."""
    return {
        "kind": kind,
        "account_id": account_id,
        "env": env,
        "payload": payload,
        "created_ms": now,
        "next_attempt_ms": now,
        "attempts": 0,
    }


def enqueue(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Queue messages (rows made by :func:`message`) in the session's transaction."""
    conn = session.connection()
    for start in range(0, len(rows), ROWS_PER_INSERT):
        # One multi-row statement per chunk: one round trip, however many rows.
        conn.execute(insert(_outbox).values(list(rows[start : start + ROWS_PER_INSERT])))


def backoff_ms(attempts: int) -> int:
    """Delay before the next try after ``attempts`` failed ones: 30 s, 60 s,
    120 s, ... capped at an hour."""
    return min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS * 2 ** max(0, attempts - 1)) * 1000


@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    attempts: int  # including this one
    payload: dict[str, Any]
    account_id: int
    env: str
    account_name: str | None


def _due(kind: str, now: int) -> Any:
    o = _outbox
    return (
        o.c.kind == kind,
        o.c.delivered_ms.is_(None),
        o.c.failed_ms.is_(None),
        o.c.next_attempt_ms <= now,
    )


def claim_due(session: Session, kind: str, now: int, limit: int) -> list[Lease]:
    """Up to ``limit`` due messages of ``kind``, each leased to this worker."""
    o = _outbox
    rows = session.execute(
        select(
            o.c.id,
            o.c.next_attempt_ms,
            o.c.attempts,
            o.c.payload,
            o.c.account_id,
            o.c.env,
            Account.name,
        )
        .join(Account, Account.id == o.c.account_id, isouter=True)
        .where(*_due(kind, now))
        .order_by(o.c.next_attempt_ms, o.c.id)
        .limit(limit)
    ).all()
    leased = []
    for message_id, seen, attempts, payload, account_id, env, name in rows:
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
            leased.append(Lease(message_id, attempts + 1, payload, account_id, env, name))
    return leased


def fail_all_due(session: Session, kind: str, now: int, reason: str) -> int:
    """Give up on every due message of ``kind`` at once (no way to send any of
    them), so nothing piles up; the reason is recorded on each."""
    return rowcount(
        session.execute(
            update(_outbox).where(*_due(kind, now)).values(failed_ms=now, last_error=reason)
        )
    )


def record_delivered(session: Session, message_id: int, now: int) -> None:
    session.execute(
        update(_outbox).where(_outbox.c.id == message_id).values(delivered_ms=now, last_error=None)
    )


def record_failure(
    session: Session,
    message_id: int,
    attempts: int,
    now: int,
    error: str,
    *,
    max_attempts: int = MAX_ATTEMPTS,
) -> None:
    values: dict[str, Any] = {"last_error": error[:1000]}
    if attempts >= max_attempts:
        values["failed_ms"] = now
    else:
        values["next_attempt_ms"] = now + backoff_ms(attempts)
    session.execute(update(_outbox).where(_outbox.c.id == message_id).values(**values))
