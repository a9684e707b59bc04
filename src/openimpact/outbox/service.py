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

import orjson
from sqlalchemy import bindparam, column, insert, select, update
from sqlalchemy import table as sa_table
from sqlalchemy.orm import Session

from openimpact import sql
from openimpact.accounts.models import Account
from openimpact.db import rowcount, table
from openimpact.kit import random_b32
from openimpact.outbox.models import OutboxMessage
from openimpact.timeutil import ms_to_iso

# The customer emails the domains queue (notifications/ composes them).
IMPACT_CREATED = "impact_created"
IMPACT_COMPLETED = "impact_completed"

EVENT = "event"
# The events an account's endpoints can subscribe to (docs/webhooks.md).
# ``ping`` is sent by a test and to its endpoint only.
IMPACT_EVENTS = {
    "initiated": "impact.initiated",
    "donation_received": "impact.donation_received",
    "transferred": "impact.transferred",
    "completed": "impact.completed",
}
IMPACT_CANCELLED = "impact.cancelled"
SCHEDULE_IMPACT_CREATED = "schedule.impact_created"
BUDGET_THRESHOLD_REACHED = "budget.threshold_reached"
BUDGET_EXCEEDED = "budget.exceeded"
PING = "ping"
EVENT_TYPES = (
    *IMPACT_EVENTS.values(),
    IMPACT_CANCELLED,
    SCHEDULE_IMPACT_CREATED,
    BUDGET_THRESHOLD_REACHED,
    BUDGET_EXCEEDED,
)

MAX_ATTEMPTS = 8
BASE_BACKOFF_SECONDS = 30
MAX_BACKOFF_SECONDS = 3600
LEASE_SECONDS = 300
# Rows per multi-row INSERT: 7 parameters each, well under SQLite's 32,766
# and PostgreSQL's 65,535 bound parameters per statement.
ROWS_PER_INSERT = 1000

_outbox = table(OutboxMessage)
# Read, not owned: whether anyone listens to an account's events
# (webhooks/models.py owns the table).
_endpoints = sa_table(
    "webhook_endpoints",
    column("account_id"),
    column("env"),
    column("enabled"),
    column("deleted_ms"),
)
_LISTENING = (
    select(_endpoints.c.account_id, _endpoints.c.env)
    .where(
        _endpoints.c.account_id.in_(bindparam("p_accounts", expanding=True)),
        _endpoints.c.enabled.is_(True),
        _endpoints.c.deleted_ms.is_(None),
    )
    .distinct()
)


# Why an email is given up: the worker's reason, recorded on each message.
NO_SMTP = "no SMTP server configured"


@dataclass(frozen=True, slots=True)
class Events:
    """How a change records its events and messages: whether events at all
    (``OPENIMPACT_EVENTS``); the base of the certificate links in their data
    (the public URL, or the request's; without either a link is a path); and,
    when the emails it queues cannot be sent, why (see :func:`unsent_reason`)."""

    enabled: bool = True
    base_url: str | None = None
    emails_unsent: str | None = None

    def certificate_base(self) -> str:
        return (self.base_url or "").rstrip("/")

    @classmethod
    def of(cls, settings: Any) -> Events:
        """The events of a change made outside a request (the worker, commands)."""
        return cls(settings.events, settings.public_url)

    @classmethod
    def of_server(cls, settings: Any, base_url: str | None = None) -> Events:
        """The events of a change the server makes (a request's: ``base_url``
        is its public base): this process's own worker, if it runs one, is
        the one that would send or give up its emails."""
        return cls(settings.events, base_url or settings.public_url, unsent_reason(settings))


def unsent_reason(settings: Any) -> str | None:
    """Why this process's customer emails cannot be sent, or None.

    With no SMTP server and the worker running in this very process, the
    worker gives up every email it finds, with :data:`NO_SMTP`, a moment after
    it was written: a second write of each row (an UPDATE per email, under
    SQLite's write lock) that the writer saves by recording it so at once, as
    it settles the events nobody listens to. When the worker runs as a
    process of its own (``OPENIMPACT_BACKGROUND_WORKER=false`` here), it may
    have an SMTP server this process does not know of: the emails are queued,
    as they are for changes made by commands (:meth:`Events.of`)."""
    if settings.background_worker and not settings.smtp_url:
        return NO_SMTP
    return None


def settle_unsent(rows: Sequence[dict[str, Any]], reason: str) -> None:
    """Record the emails among ``rows`` as given up for ``reason`` as they are
    written: the worker never claims them; the row says why, as if it had."""
    for row in rows:
        if row["kind"] == "email" and row["failed_ms"] is None:
            row["failed_ms"] = row["created_ms"]
            row["last_error"] = reason


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
        "delivered_ms": None,
        "failed_ms": None,
        "last_error": None,
        "event_id": None,
        "event_type": None,
        "endpoint_pk": None,
    }


def new_event_id() -> str:
    """``evt_`` and 120 random bits: the ``webhook-id`` of every delivery."""
    return "evt_" + random_b32(120)


def event(
    event_type: str,
    account_id: int,
    env: str,
    data: dict[str, Any],
    now: int,
    *,
    endpoint_pk: int | None = None,
) -> dict[str, Any]:
    """One event row, due for delivery now; its payload is what a webhook
    carries and the feed lists: ``{"type", "timestamp", "data"}``."""
    row = message(
        EVENT, account_id, env, {"type": event_type, "timestamp": ms_to_iso(now), "data": data}, now
    )
    row["event_id"] = new_event_id()
    row["event_type"] = event_type
    if endpoint_pk is not None:
        # A test ping: sent to its endpoint by its own message, never fanned out.
        row["endpoint_pk"] = endpoint_pk
        row["delivered_ms"] = now
    return row


def settle_unheard(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Mark delivered the events of ``rows`` that no webhook endpoint listens
    to (one query), so that the worker never has to claim them; the feed
    lists them all the same. An endpoint receives the events written after it
    was saved."""
    keys = sorted(
        {(r["account_id"], r["env"]) for r in rows if r["kind"] == EVENT and not r["delivered_ms"]}
    )
    if not keys:
        return
    accounts = sorted({a for a, _ in keys})
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        found = sql.sqlite_rows(
            conn, sql.LISTENING_SQLITE, {"p_accounts": orjson.dumps(accounts).decode()}
        )
    else:
        found = list(conn.execute(_LISTENING, {"p_accounts": accounts}))
    listening = {(a, e) for a, e in found}
    for row in rows:
        if (
            row["kind"] == EVENT
            and not row["delivered_ms"]
            and (row["account_id"], row["env"]) not in listening
        ):
            row["delivered_ms"] = row["created_ms"]


def enqueue(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Queue messages (rows made by :func:`message`) in the session's transaction."""
    settle_unheard(session, rows)
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


# Messages given up in one transaction: about a millisecond of a busy
# database's write lock (SQLite has one for the whole file), never a stall;
# between two chunks a waiting impact batch gets its turn (db._ThreadTurns).
FAIL_CHUNK = 250


def fail_due(session: Session, kind: str, now: int, reason: str, limit: int = FAIL_CHUNK) -> int:
    """Give up on up to ``limit`` due messages of ``kind`` (no way to send any
    of them), so nothing piles up; the reason is recorded on each. The caller
    repeats, a transaction each time, while a full chunk was given up."""
    o = _outbox
    # The soonest ``limit``, in the order of the partial due index
    # (outbox/models.py): a backlog is neither sorted nor read whole. On
    # PostgreSQL they are locked (SKIP LOCKED) as they are found, so one that
    # another worker is sending or has just sent is never given up here.
    given_up = sql.claim(
        session.connection(),
        o,
        list(_due(kind, now)),
        [o.c.next_attempt_ms, o.c.id],
        limit,
        {"failed_ms": now, "last_error": reason},
        [o.c.id],
    )
    return len(given_up)


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
