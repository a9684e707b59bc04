"""The background worker: emails through a real (local) SMTP server, retries
and giving up, cleanup of old Idempotency-Keys, and the in-process loop."""

from __future__ import annotations

import email
import email.policy
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select, update

from openimpact.accounts.models import Account
from openimpact.accounts.service import create_account
from openimpact.app import create_app
from openimpact.db import Database, table
from openimpact.impacts.models import IdempotencyRecord, Impact
from openimpact.notifications.service import MAX_ATTEMPTS, NO_SMTP, parse_smtp_url
from openimpact.outbox.models import OutboxMessage
from openimpact.timeutil import ms_to_iso, now_ms
from openimpact.webhooks import delivery as webhooks
from openimpact.worker import (
    deliver_emails,
    expire_idempotency_keys,
    purge_idempotency_keys,
    run_once,
)
from tests.conftest import TestDatabase
from tests.factories import Api
from tests.lifecycle.conftest import impact_row, set_impact
from tests.reads import reads


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Inbox:
    port: int
    messages: list[Any] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 Message accepted"

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [
            email.message_from_bytes(envelope.content, policy=email.policy.default)
            for envelope in self.messages
            if address in envelope.rcpt_tos
        ]


def deliver_all(db: Any, settings: Any, now: int | None = None) -> int:
    """Deliver every due email, however many earlier tests left queued (a
    pass sends for at most EMAIL_PASS_SECONDS); the number sent."""
    sent = 0
    for _ in range(1000):
        counts = deliver_emails(db, settings, now=now)
        sent += counts["sent"]
        if not any(counts.values()):
            return sent
    raise AssertionError("the outbox did not drain")


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    box = Inbox(_free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


def _notified_impact(api: Api, name: str = "Acme") -> tuple[Any, str, dict[str, Any], int]:
    """A production impact on behalf of a customer, its outbox message due first."""
    account = api.account(name=name)
    customer = f"jane-{secrets.token_hex(4)}@example.com"
    created = api.as_(account).plant(5, customer_email=customer, customer_name="Jane Doe")

    def first_in_line(session: Any) -> int:
        message_id = session.scalar(
            select(OutboxMessage.id).where(
                OutboxMessage.payload["time_utc"].as_string() == created["time_utc"],
                OutboxMessage.payload["user_id"].as_string() == account.user_id,
            )
        )
        assert message_id is not None, "the impact queued no email"
        session.execute(
            update(OutboxMessage).where(OutboxMessage.id == message_id).values(next_attempt_ms=0)
        )
        return message_id

    return account, customer, created, api.db.run_sync(first_in_line, write=True)


def _chunked(limit: int) -> Any:
    """notifications.service.fail_due with chunks of ``limit``."""

    def fail(session: Any, now: int, reason: str) -> int:
        from openimpact.outbox import service as outbox

        return outbox.fail_due(session, "email", now, reason, limit=limit)

    return fail


def _message(api: Api, message_id: int) -> OutboxMessage:
    return api.db.run_sync(lambda s: s.get(OutboxMessage, message_id))


class TestEmails:
    def test_delivers_to_the_customer(self, api: Api, database: TestDatabase, inbox: Inbox) -> None:
        account, customer, created, message_id = _notified_impact(api)
        settings = database.settings(
            smtp_url=f"smtp://127.0.0.1:{inbox.port}",
            public_url="https://impact.example.org",
            mail_from="impact@example.org",
        )
        counts = deliver_emails(api.db, settings)
        assert counts["sent"] >= 1
        [sent] = inbox.to(customer)
        assert sent["Subject"] == "Acme: 5 trees planted on your behalf"
        assert sent["From"] == "impact@example.org"
        assert sent["To"] == f"Jane Doe <{customer}>"
        # Plain text and HTML (multipart/alternative); the text part says it all.
        body = sent.get_body(preferencelist=("plain",)).get_content()
        tracking = f"{account.user_id}-{created['time_utc']}"
        assert "Hello Jane Doe," in body
        assert f"Tracking ID: {tracking}" in body
        assert f"https://impact.example.org/certificate/{tracking}" in body
        stored = _message(api, message_id)
        assert stored.delivered_ms is not None and stored.attempts == 1
        # Delivered means delivered once.
        deliver_emails(api.db, settings)
        assert len(inbox.to(customer)) == 1

    def test_unreachable_server_backs_off_then_gives_up(
        self, api: Api, database: TestDatabase
    ) -> None:
        _account, _customer, _created, message_id = _notified_impact(api)
        settings = database.settings(smtp_url=f"smtp://127.0.0.1:{_free_port()}")
        before = now_ms()
        deliver_emails(api.db, settings)
        stored = _message(api, message_id)
        assert stored.attempts == 1 and stored.failed_ms is None
        assert "ConnectionRefusedError" in (stored.last_error or "")
        assert stored.next_attempt_ms >= before + 30_000  # the first backoff step
        api.db.run_sync(
            lambda s: s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == message_id)
                .values(attempts=MAX_ATTEMPTS - 1, next_attempt_ms=0)
            ),
            write=True,
        )
        deliver_emails(api.db, settings)
        stored = _message(api, message_id)
        assert stored.attempts == MAX_ATTEMPTS
        assert stored.failed_ms is not None and stored.delivered_ms is None

    def test_a_pass_drains_a_backlog_claim_after_claim_until_its_time_is_up(
        self,
        api: Api,
        database: TestDatabase,
        inbox: Inbox,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        import openimpact.worker as worker

        settings = database.settings(smtp_url=f"smtp://127.0.0.1:{inbox.port}")
        deliver_all(api.db, settings)  # what earlier tests left due
        connections: list[Any] = []

        def connect(*args: Any, **kwargs: Any) -> Any:
            import smtplib

            connections.append(args)
            return smtplib.SMTP(*args, **kwargs)

        monkeypatch.setattr(worker, "EMAILS_PER_CLAIM", 10)
        me = api.as_(api.account())
        customers = [f"c{n}-{secrets.token_hex(3)}@example.com" for n in range(25)]
        for customer in customers:
            me.plant(1, customer_email=customer)
        # The process stopping: one claim's worth.
        stopping = deliver_emails(api.db, settings, smtp_factory=connect, stopping=lambda: True)
        assert stopping["sent"] == 10
        # Out of time after the first claim: one claim's worth.
        monkeypatch.setattr(worker, "EMAIL_PASS_SECONDS", 0.0)
        assert deliver_emails(api.db, settings, smtp_factory=connect)["sent"] == 10
        # Then the rest in one pass, claim after claim, over one connection.
        monkeypatch.setattr(worker, "EMAIL_PASS_SECONDS", 30.0)
        monkeypatch.setattr(worker, "EMAILS_PER_CLAIM", 2)
        connections.clear()
        assert deliver_emails(api.db, settings, smtp_factory=connect) == {
            "sent": 5,
            "retried": 0,
            "failed": 0,
        }
        assert len(connections) == 1
        assert all(len(inbox.to(customer)) == 1 for customer in customers)

    def test_without_smtp_nothing_piles_up(self, api: Api, database: TestDatabase) -> None:
        _account, _customer, _created, message_id = _notified_impact(api)
        deliver_emails(api.db, database.settings())
        stored = _message(api, message_id)
        assert stored.failed_ms is not None
        assert stored.last_error == NO_SMTP

    def test_without_smtp_many_are_given_up_a_chunk_per_transaction(
        self, api: Api, database: TestDatabase, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from openimpact import worker
        from openimpact.notifications import service as mail

        monkeypatch.setattr(worker, "FAIL_CHUNK", 3)
        monkeypatch.setattr(mail, "fail_due", _chunked(3))
        account = api.account()
        me = api.as_(account)
        for n in range(7):
            me.plant(1, customer_email=f"c{n}@example.com")
        transactions: list[int] = []
        real = api.db.run_sync

        def run_sync(fn: Any, *args: Any, **kwargs: Any) -> Any:
            result = real(fn, *args, **kwargs)
            if fn is mail.fail_due:
                transactions.append(result)
            return result

        monkeypatch.setattr(api.db, "run_sync", run_sync)
        failed = deliver_emails(api.db, database.settings(), now=now_ms() + 60_000)["failed"]
        monkeypatch.undo()
        assert failed >= 7 and transactions[-1] < 3 and all(n == 3 for n in transactions[:-1])
        left = api.db.run_sync(
            lambda s: s.scalar(
                select(func.count()).where(
                    OutboxMessage.account_id
                    == select(Account.id)
                    .where(Account.user_id == account.user_id)
                    .scalar_subquery(),
                    OutboxMessage.kind == "email",
                    OutboxMessage.failed_ms.is_(None),
                )
            )
        )
        assert left == 0

    def test_smtp_urls(self) -> None:
        target = parse_smtp_url("smtp+starttls://me%40x.org:s3cr%2Ft@mail.example.org")
        assert (target.host, target.port, target.security) == ("mail.example.org", 587, "starttls")
        assert (target.username, target.password) == ("me@x.org", "s3cr/t")
        assert parse_smtp_url("smtps://mail.example.org").port == 465
        with pytest.raises(ValueError, match="OPENIMPACT_SMTP_URL"):
            parse_smtp_url("http://mail.example.org")


def test_purges_old_idempotency_keys(api: Api, database: TestDatabase) -> None:
    account = api.account()
    caller = api.as_(account, "sandbox")
    caller.post("/v1/plant_tree", {"amount": 1}, idempotency_key="old-key")
    caller.post("/v1/plant_tree", {"amount": 2}, idempotency_key="new-key")
    settings = database.settings(idempotency_ttl_hours=48)
    api.db.run_sync(
        lambda s: s.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.key == "old-key")
            .values(created_ms=now_ms() - 49 * 3_600_000)
        ),
        write=True,
    )
    assert purge_idempotency_keys(api.db, settings) >= 1
    keys = api.db.run_sync(
        lambda s: set(
            s.scalars(
                select(IdempotencyRecord.key).where(
                    IdempotencyRecord.key.in_(["old-key", "new-key"])
                )
            )
        )
    )
    assert "old-key" not in keys and "new-key" in keys


def test_events_go_thirty_days_after_they_settled(api: Api, database: TestDatabase) -> None:
    """The purge finds old events by delivered_ms (an index seek): an event
    settled 31 days ago goes, one settled 29 days ago and one never settled
    stay, and so do the emails."""
    account = api.account()
    caller = api.as_(account, "production")
    for amount in (1, 2, 3):
        caller.plant(amount, customer_email=f"buyer{amount}@example.com")
    day = 86_400_000
    now = now_ms()

    def rows(s: Any) -> list[OutboxMessage]:
        return list(
            s.scalars(
                select(OutboxMessage)
                .join(Account, Account.id == OutboxMessage.account_id)
                .where(Account.user_id == account.user_id)
                .order_by(OutboxMessage.id)
            )
        )

    events = [m.id for m in api.db.run_sync(rows) if m.kind == "event"]
    assert len(events) == 3
    ages = {events[0]: 31, events[1]: 29, events[2]: None}  # days since settled

    def age(s: Any) -> None:
        for pk, days in ages.items():
            settled = None if days is None else now - days * day
            s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == pk)
                .values(created_ms=now - 40 * day, delivered_ms=settled)
            )

    api.db.run_sync(age, write=True)
    assert webhooks.purge(api.db, now=now) == 1
    left = api.db.run_sync(rows)
    assert [m.id for m in left if m.kind == "event"] == events[1:]
    assert sum(m.kind == "email" for m in left) == 3


def test_one_pass_reports_each_job(api: Api, database: TestDatabase) -> None:
    report = run_once(api.db, database.settings())
    assert set(report) == {
        "sandbox_changes",
        "scheduled_impacts",
        "bonus_impacts",
        "webhooks",
        "emails",
        "idempotency_keys_deleted",
        "events_deleted",
    }
    assert "error" not in report.values()


def test_the_server_runs_the_worker_by_itself(database: TestDatabase) -> None:
    settings = database.settings(background_worker=True, worker_interval_seconds=0.05)
    with TestClient(create_app(settings)) as client:
        api = Api(client)
        account = api.account()
        created = api.as_(account, "sandbox").plant(1)
        row = impact_row(api.db, account.user_id, created["time_utc"], "sandbox")
        old = row.time_ms - 10 * settings.sandbox_stage_seconds * 1000
        set_impact(api.db, row.id, time_ms=old)
        deadline = time.monotonic() + 10
        stage = None
        while time.monotonic() < deadline:
            stage = api.db.run_sync(lambda s: s.get(Impact, row.id).stage)
            if stage == "completed":
                break
            time.sleep(0.05)
        assert stage == "completed", "the in-process worker did not advance the impact"
        track = api.as_(account, "sandbox").get(
            "/v1/track", user_id=account.user_id, time_utc=ms_to_iso(old)
        )
        assert "impact_completed" in track.json()


def test_expired_idempotency_keys_go_a_chunk_per_transaction(
    api: Api, database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every expired key goes, however many there are, but never more than a
    chunk of them in one transaction (a long DELETE holds SQLite's write lock)."""
    import openimpact.worker as worker

    caller = api.as_(api.account(), "sandbox")
    for n in range(7):
        caller.post("/v1/plant_tree", {"amount": 1}, idempotency_key=f"expired-{n}")
    caller.post("/v1/plant_tree", {"amount": 1}, idempotency_key="fresh")
    api.db.run_sync(
        lambda s: s.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.key.like("expired-%"))
            .values(created_ms=now_ms() - 49 * 3_600_000)
        ),
        write=True,
    )
    monkeypatch.setattr(worker, "PURGE_CHUNK", 3)
    transactions: list[int] = []
    original = api.db.run_sync

    def counted(fn: Any, *args: Any, write: bool = False) -> Any:
        out = original(fn, *args, write=write)
        transactions.append(out)
        return out

    monkeypatch.setattr(api.db, "run_sync", counted)
    deleted = purge_idempotency_keys(api.db, database.settings(idempotency_ttl_hours=48))
    monkeypatch.undo()
    # Other tests' expired keys in this database may go too.
    assert deleted >= 7 and sum(transactions) == deleted
    assert len(transactions) >= 3 and all(n == 3 for n in transactions[:-1])
    assert transactions[-1] < 3
    left = api.db.run_sync(
        lambda s: set(
            s.scalars(select(IdempotencyRecord.key).where(IdempotencyRecord.key.like("expired-%")))
        )
    )
    assert left == set()
    again = caller.post("/v1/plant_tree", {"amount": 1}, idempotency_key="fresh")
    assert again.headers.get("idempotent-replayed") == "true"


def test_a_pass_with_no_expired_key_reads_one_index_entry_whatever_the_statistics(
    own_database: Database,
) -> None:
    """A fresh database (no planner statistics on PostgreSQL) of 5,000 keys,
    none expired: the purge looks at the oldest and stops, where the chunk's
    DELETE alone scans every key on PostgreSQL."""
    db = own_database
    account, _ = db.run_sync(
        lambda s: create_account(s, email="keys@purge.example", name="Keys"), write=True
    )
    now = now_ms()
    rows = [
        {
            "account_id": account.id,
            "env": "production",
            "key": f"k{n}",
            "request_hash": "h",
            "status_code": 200,
            "response_body": "{}",
            "created_ms": now - 1_000 + n // 10,
        }
        for n in range(5_000)
    ]
    db.run_sync(lambda s: s.execute(insert(table(IdempotencyRecord)), rows), write=True)
    cutoff = now - 24 * 3_600_000

    deleted, read = reads(
        db, "idempotency_keys", lambda s: expire_idempotency_keys(s, cutoff, 1000)
    )

    assert deleted == 0
    # PostgreSQL: index entries and rows returned; SQLite: its VM's steps.
    assert read <= (30 if db.is_sqlite else 2), read
    # And expired ones still go, oldest first, a chunk at a time.
    db.run_sync(
        lambda s: s.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.key.in_(["k0", "k1", "k2"]))
            .values(created_ms=cutoff - 1)
        ),
        write=True,
    )
    assert db.run_sync(expire_idempotency_keys, cutoff, 2, write=True) == 2
    assert db.run_sync(expire_idempotency_keys, cutoff, 2, write=True) == 1
    assert db.run_sync(expire_idempotency_keys, cutoff, 2, write=True) == 0
    left = db.run_sync(lambda s: s.scalar(select(func.count()).select_from(IdempotencyRecord)))
    assert left == 4_997
