"""The outbox's indexes (outbox/models.py): the worker's claims of one kind
never read through a backlog of the other, and the events feed is read from
indexes that hold events only, counted as tests/reads.py counts."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from openimpact.auth import Caller
from openimpact.db import Database
from openimpact.outbox import service as outbox
from openimpact.pagination import CursorCodec
from openimpact.timeutil import now_ms
from openimpact.webhooks import delivery
from openimpact.webhooks import service as webhooks
from tests.reads import reads

BACKLOG = 3_000  # due emails: five seconds of a sale's checkouts with no SMTP server
ALL = range(1, 301)  # accounts


@pytest.fixture
def db(own_database: Database) -> Database:
    return own_database


def _fill(db: Database, emails: int, events: int, accounts: Sequence[int] = ALL) -> None:
    """``emails`` due emails and ``events`` settled events (nobody listens),
    spread over ``accounts``, as the impact writer leaves them."""
    now = now_ms() - 1_000

    def fill(session: Session) -> None:
        rows = [
            outbox.message("email", accounts[n % len(accounts)], "production", {"n": n}, now)
            for n in range(emails)
        ]
        for n in range(events):
            account = accounts[n % len(accounts)]
            event = outbox.event("impact.initiated", account, "production", {"n": n}, now)
            event["delivered_ms"] = now
            rows.append(event)
        for start in range(0, len(rows), 500):
            session.execute(outbox._outbox.insert(), rows[start : start + 500])

    db.run_sync(fill, write=True)
    if not db.is_sqlite:
        db.run_sync(lambda s: s.execute(text("ANALYZE outbox")), write=True)


def _work(db: Database, fn: Callable[[Session], Any]) -> int:
    """What ``fn`` made the database read of the outbox (tests/reads.py)."""
    return reads(db, "outbox", fn)[1]


def _claim_events(session: Session) -> None:
    delivery.claim_events(session, now_ms(), 100, 60_000, 100)


def _fail_ten(session: Session) -> None:
    assert outbox.fail_due(session, "email", now_ms(), "no SMTP server", limit=10) == 10


def _assert_not_grown(before: int, after: int) -> None:
    """What a statement read after the outbox grew by thousands of rows it
    should not look at: about what it read before (each row costs VM steps
    on SQLite, so a read through the backlog is tens of thousands)."""
    assert after <= before * 2 + 50, (before, after)


def test_the_event_claims_do_not_read_a_backlog_of_due_emails(db: Database) -> None:
    _fill(db, 0, 200)
    before = _work(db, _claim_events)
    _fill(db, BACKLOG, 0)
    # Through the old queue index (delivered_ms, failed_ms, next_attempt_ms)
    # the claim and the give-up each read every due email.
    _assert_not_grown(before, _work(db, _claim_events))


def test_giving_up_emails_reads_only_the_chunk(db: Database) -> None:
    _fill(db, 20, 200)
    before = _work(db, _fail_ten)
    _fill(db, BACKLOG, 0)
    _assert_not_grown(before, _work(db, _fail_ten))


def test_the_events_feed_reads_the_accounts_events_only(db: Database) -> None:
    """Each feed query is read from its partial index (events only, by
    account): it must say ``event_type IS NOT NULL`` (or name a type) for the
    database to use it."""
    codec = CursorCodec("outbox-test")
    caller = Caller(7, "user", "shop@example.com", "Shop", "production", "hash")

    def feed(event_type: str | None, expected: int) -> int:
        """What the feed read once it showed the ``expected`` events. On
        PostgreSQL it stops below the oldest transaction still running in
        the whole server (webhooks/service.py), and the tests of other
        processes run theirs on databases of their own there."""
        shown: list[int] = []

        def read(session: Session) -> None:
            events, _ = webhooks.list_events(session, caller, event_type, 100, None, codec)
            shown.append(len(events))

        deadline = time.monotonic() + 30
        while True:
            read_ = _work(db, read)
            if shown[-1] == expected or time.monotonic() > deadline:
                assert shown[-1] == expected, shown
                return read_
            time.sleep(0.05)

    _fill(db, 0, 10, accounts=[7])
    alone = {kind: feed(kind, 10) for kind in (None, "impact.initiated")}
    # Ten more events of account 7 among 2,990 of others, and 3,000 emails.
    _fill(db, BACKLOG, BACKLOG)
    among_others = {kind: feed(kind, 20) for kind in (None, "impact.initiated")}
    for kind, read in among_others.items():
        _assert_not_grown(alone[kind], read)
