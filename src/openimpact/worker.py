"""The background worker. Each pass:

1. advances sandbox impacts that their compressed schedule has made due
   (``lifecycle/sandbox.py``);
2. delivers due outbox emails over SMTP, with retries and backoff
   (``notifications/service.py``; dashboard invitations and resets are
   written by ``users/emails.py``), or, with no SMTP server configured, marks
   them failed so nothing piles up;
3. delivers events to webhook endpoints, signed, with retries
   (``webhooks/delivery.py``);
4. deletes Idempotency-Key records older than ``idempotency_ttl_hours``, and
   events, delivery attempts and finished messages older than 30 days.

It runs as ``openimpact worker`` and, unless ``OPENIMPACT_BACKGROUND_WORKER``
is false, inside every server process too, so ``openimpact serve`` alone shows
the sandbox simulation. Any number of workers may run at once: every change is
a conditional UPDATE or an idempotent DELETE, and emails are claimed with a
lease before they are sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from openimpact.budgets import emails as budget_emails
from openimpact.config import Settings
from openimpact.db import Database, rowcount, table
from openimpact.impacts.models import IdempotencyRecord
from openimpact.lifecycle import sandbox
from openimpact.lifecycle.service import new_batch_id
from openimpact.notifications import service as mail
from openimpact.outbox.service import FAIL_CHUNK, Events
from openimpact.timeutil import now_ms
from openimpact.users import emails as user_emails
from openimpact.webhooks import delivery as webhooks
from openimpact.webhooks import emails as webhook_emails

log = logging.getLogger(__name__)

SANDBOX_CHUNK = 1000
EMAILS_PER_CLAIM = 100  # emails leased at once; a pass claims again while a claim was full
# One pass sends emails at most this long, so the worker's other jobs run too.
EMAIL_PASS_SECONDS = 30.0
PURGE_CHUNK = 1000  # expired Idempotency-Key records deleted per transaction
_MAX_SANDBOX_ROUNDS = 100  # bounds one pass: 100 rounds of 1000 per stage

SmtpFactory = Callable[..., Any]


def advance_sandbox(db: Database, settings: Settings, now: int | None = None) -> int:
    now = now if now is not None else now_ms()
    batch_id = new_batch_id(sandbox.ACTOR)
    total = 0
    for _ in range(_MAX_SANDBOX_ROUNDS):
        changed = db.run_sync(
            lambda s: sandbox.advance_due(
                s,
                now,
                settings.sandbox_stage_seconds,
                limit=SANDBOX_CHUNK,
                batch_id=batch_id,
                events=Events.of(settings),
            ),
            write=True,
        )
        total += changed
        if changed == 0:
            break
    return total


def purge_idempotency_keys(db: Database, settings: Settings, now: int | None = None) -> int:
    """Delete the Idempotency-Key records older than the TTL, a chunk per
    transaction: a busy server expires as many keys per pass as it stored, and
    one DELETE of them all would hold SQLite's write lock for that long."""
    now = now if now is not None else now_ms()
    cutoff = now - settings.idempotency_ttl_hours * 3_600_000
    deleted = 0
    while True:
        done = db.run_sync(expire_idempotency_keys, cutoff, PURGE_CHUNK, write=True)
        deleted += done
        if done < PURGE_CHUNK:
            return deleted


_keys = table(IdempotencyRecord)
_OLDEST_KEY = select(func.min(_keys.c.created_ms))


def expire_idempotency_keys(session: Session, cutoff: int, limit: int) -> int:
    """Delete up to ``limit`` Idempotency-Key records created before
    ``cutoff``; how many. The oldest record is looked at first, by the end of
    the created_ms index whatever the planner's statistics: most passes find
    nothing expired, and PostgreSQL without statistics (a fresh database, or
    autovacuum off) would otherwise scan the whole table to find that out."""
    oldest = session.scalar(_OLDEST_KEY)
    if oldest is None or oldest >= cutoff:
        return 0
    chunk = (select(_keys.c.id).where(_keys.c.created_ms < cutoff).limit(limit)).scalar_subquery()
    return rowcount(session.execute(delete(_keys).where(_keys.c.id.in_(chunk))))


def _fail_all_due(db: Database, now: int, reason: str) -> int:
    """Give up on every due email, a chunk per transaction, so that impact
    writes never wait long behind it."""
    failed = 0
    while True:
        chunk = db.run_sync(mail.fail_due, now, reason, write=True)
        failed += chunk
        if chunk < FAIL_CHUNK:
            return failed


def deliver_emails(
    db: Database,
    settings: Settings,
    now: int | None = None,
    smtp_factory: SmtpFactory | None = None,
    stopping: Callable[[], bool] = lambda: False,
) -> dict[str, int]:
    """One pass of email delivery; counts of sent, retried and failed messages.
    It claims again while its claim was full, until its time is up or
    ``stopping()``."""
    fixed = now  # a caller's "now" (tests: everything due); else the clock of each claim
    now = now if now is not None else now_ms()
    counts = {"sent": 0, "retried": 0, "failed": 0}
    if not settings.smtp_url:
        counts["failed"] = _fail_all_due(db, now, mail.NO_SMTP)
        return counts
    try:
        target = mail.parse_smtp_url(settings.smtp_url)
    except ValueError as exc:
        counts["failed"] = _fail_all_due(db, now, str(exc))
        return counts
    deadline = time.monotonic() + EMAIL_PASS_SECONDS

    def claim() -> list[mail.Claimed]:
        at = fixed if fixed is not None else now_ms()
        leased: list[mail.Claimed] = db.run_sync(mail.claim_due, at, EMAILS_PER_CLAIM, write=True)
        return leased

    claimed = claim()
    if not claimed:
        return counts

    def failed(message: mail.Claimed, error: str) -> None:
        db.run_sync(mail.record_failure, message, now_ms(), error, write=True)
        counts["failed" if message.attempts >= mail.MAX_ATTEMPTS else "retried"] += 1

    factory = smtp_factory or (smtplib.SMTP_SSL if target.security == "tls" else smtplib.SMTP)
    done = 0  # messages of ``claimed`` recorded
    try:
        with factory(target.host, target.port, timeout=30) as smtp:
            if target.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if target.username:
                smtp.login(target.username, target.password or "")
            # Over one connection, claim after claim: a sale's backlog drains
            # in this pass instead of a claim's worth every interval.
            while True:
                for message in claimed:
                    _send_one(db, smtp, message, settings, counts, failed)
                    done += 1
                if len(claimed) < EMAILS_PER_CLAIM or time.monotonic() >= deadline or stopping():
                    break
                claimed, done = claim(), 0
                if not claimed:
                    break
    except (smtplib.SMTPException, OSError) as exc:
        # The server could not be reached (or dropped us): every claimed
        # message not yet recorded gets this attempt counted and retried.
        for message in claimed[done:]:
            failed(message, f"{type(exc).__name__}: {exc}")
    return counts


def _send_one(
    db: Database,
    smtp: Any,
    message: mail.Claimed,
    settings: Settings,
    counts: dict[str, int],
    failed: Callable[[mail.Claimed, str], None],
) -> None:
    """Compose and send one claimed email, and record what happened."""
    try:
        email = _compose(message, settings)
    except (KeyError, TypeError, ValueError) as exc:
        # A message that cannot be written will never succeed.
        db.run_sync(
            mail.record_failure, _final(message), now_ms(), f"cannot compose: {exc}", write=True
        )
        counts["failed"] += 1
        return
    try:
        smtp.send_message(email)
    except (smtplib.SMTPException, OSError) as exc:
        failed(message, f"{type(exc).__name__}: {exc}")
        return
    db.run_sync(mail.record_delivered, message.id, now_ms(), write=True)
    counts["sent"] += 1


def _compose(message: mail.Claimed, settings: Settings) -> Any:
    """The email of a message: a dashboard user's link, or a customer notification."""
    if message.payload.get("template") in user_emails.TEMPLATES:
        return user_emails.compose(message.payload, settings.mail_from)
    if message.payload.get("template") in budget_emails.TEMPLATES:
        return budget_emails.compose(message.payload, settings.mail_from)
    if message.payload.get("template") in webhook_emails.TEMPLATES:
        return webhook_emails.compose(message.payload, settings.mail_from)
    return mail.compose_email(
        message.payload, message.business_name, settings.mail_from, settings.public_url
    )


def _final(message: mail.Claimed) -> mail.Claimed:
    return mail.Claimed(message.id, mail.MAX_ATTEMPTS, message.payload, message.business_name)


def grant_bonuses(db: Database, settings: Settings) -> int:
    """This month's plan bonus of every account on a plan, once (plans/service.py)."""
    from openimpact.plans.service import grant_bonuses as grant

    return grant(db, events=Events.of(settings))


def run_schedules(db: Database, settings: Settings) -> int:
    """Each due period of every schedule, exactly once (schedules/service.py)."""
    from openimpact.schedules.service import run_due

    return run_due(db, events=Events.of(settings)).created


def run_once(
    db: Database,
    settings: Settings,
    smtp_factory: SmtpFactory | None = None,
    stopping: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """One pass of every job; a failing job is logged and does not stop the
    others. ``stopping`` says that the process is stopping: a long job ends at
    its next step."""
    report: dict[str, Any] = {}
    jobs: dict[str, Callable[[], Any]] = {
        "sandbox_changes": lambda: advance_sandbox(db, settings),
        "scheduled_impacts": lambda: run_schedules(db, settings),
        "bonus_impacts": lambda: grant_bonuses(db, settings),
        "webhooks": lambda: webhooks.deliver_webhooks(db, settings),
        "emails": lambda: deliver_emails(
            db, settings, smtp_factory=smtp_factory, stopping=stopping
        ),
        "idempotency_keys_deleted": lambda: purge_idempotency_keys(db, settings),
        "events_deleted": lambda: webhooks.purge(db),
    }
    for name, job in jobs.items():
        try:
            report[name] = job()
        except Exception:
            log.exception("worker job %s failed", name)
            report[name] = "error"
    return report


def run_forever(db: Database, settings: Settings, stop: threading.Event) -> None:
    """The ``openimpact worker`` loop, until ``stop`` is set."""
    while not stop.is_set():
        report = run_once(db, settings, stopping=stop.is_set)
        if any(report.values()):
            log.info("worker pass: %s", report)
        stop.wait(settings.worker_interval_seconds)


async def run_in_background(db: Database, settings: Settings, stop: asyncio.Event) -> None:
    """The same loop inside the server process; passes run in a thread so the
    event loop keeps serving requests."""
    while not stop.is_set():
        try:
            await anyio.to_thread.run_sync(
                functools.partial(run_once, db, settings, stopping=stop.is_set)
            )
        except Exception:  # never let the loop die with the server still up
            log.exception("worker pass failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.worker_interval_seconds)
