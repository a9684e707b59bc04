"""Customer emails: "made on your behalf" and "completed", as HTML and text,
each written to the outbox in the transaction that causes it."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select

from openimpact.lifecycle.service import STEPS
from openimpact.lifecycle.service import advance as advance_chunk
from openimpact.notifications.service import compose_email
from openimpact.outbox.models import OutboxMessage
from tests.conftest import TestDatabase
from tests.factories import Api
from tests.lifecycle.conftest import impact_row
from tests.public.conftest import Page, Shop, advance, publish
from tests.test_worker import Inbox, deliver_all, inbox  # noqa: F401 (the fixture)

PUBLIC = "https://impact.example.org"


def _outbox(api: Api, shop: Shop) -> list[dict[str, Any]]:
    return api.db.run_sync(
        lambda s: [
            row.payload
            for row in s.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.account_id == shop.account_id, OutboxMessage.kind == "email")
                .order_by(OutboxMessage.id)
            )
        ]
    )


def _parts(message: Any) -> tuple[str, str]:
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    return text.get_content(), html.get_content()


def _deliver(api: Api, database: TestDatabase, inbox: Inbox) -> None:  # noqa: F811
    settings = database.settings(
        smtp_url=f"smtp://127.0.0.1:{inbox.port}", public_url=PUBLIC, mail_from="impact@example.org"
    )
    deliver_all(api.db, settings, now=2**53)  # every queued message is due


class TestCreated:
    def test_html_and_text_with_project_page_and_certificate(
        self,
        api: Api,
        client: TestClient,
        database: TestDatabase,
        inbox: Inbox,  # noqa: F811
    ) -> None:
        shop = publish(api, name="Acme & <Sons>")
        jane = f"jane-{secrets.token_hex(3)}@example.com"
        created = shop.api.plant(5, customer_email=jane, customer_name="Jane <Doe>")
        _deliver(api, database, inbox)
        [sent] = inbox.to(jane)
        assert sent["Subject"] == "Acme & <Sons>: 5 trees planted on your behalf"
        text, html = _parts(sent)
        tracking = shop.tracking_id(created)
        assert "Hello Jane <Doe>," in text
        assert "Acme & <Sons> made an impact on your behalf: 5 trees planted." in text
        assert f"Tracking ID: {tracking}" in text
        assert f"Certificate: {PUBLIC}/certificate/{tracking}" in text
        # HTML: the same facts, user text escaped.
        page = Page(html)
        assert "Acme &amp; &lt;Sons&gt;" in html and "<Sons>" not in html
        assert "Hello Jane <Doe>," in page.text
        assert page.link("Follow it on its certificate") == f"{PUBLIC}/certificate/{tracking}"
        # The project the assignment rules choose for it, by name and place.
        assert "Project: " in text
        project_line = next(line for line in text.splitlines() if line.startswith("Project: "))
        assert project_line.removeprefix("Project: ").split(",")[0] in page.text
        # The customer's page: the link in the email opens it.
        page_url = page.link("See all your impact with")
        assert f"All your impact with Acme & <Sons>: {page_url}" in text
        assert page_url.startswith(f"{PUBLIC}/my-impact/")
        opened = client.get(urlsplit(page_url).path)
        assert opened.status_code == 200
        assert "5 trees planted" in Page(opened.text).headings

    def test_without_a_public_url_the_email_has_no_links(self) -> None:
        payload = {
            "template": "impact_created",
            "user_id": "U1",
            "tree_planted": 2,
            "time_utc": "2026-01-02T03:04:05.006Z",
            "customer": {"customer_id": "C1", "customer_email": "a@example.com"},
            "send_context": {"page_token": "t" * 32},
        }
        text, html = _parts(compose_email(payload, "Shop", "from@example.org", None))
        assert "Tracking ID: U1-2026-01-02T03:04:05.006Z" in text
        assert "http" not in text
        assert "href" not in html

    def test_an_account_name_cannot_break_the_headers(self) -> None:
        payload = {
            "user_id": "U1",
            "tree_planted": 1,
            "time_utc": "2026-01-02T03:04:05.006Z",
            "customer": {"customer_id": "C1", "customer_email": "a@example.com"},
        }
        message = compose_email(payload, "Evil\r\nBcc: all@example.com", "f@example.org", None)
        assert message["Subject"] == "Evil Bcc: all@example.com: 1 tree planted on your behalf"
        assert message["Bcc"] is None


class TestCompleted:
    def test_queued_when_completed_only_where_notify_allowed_the_first(
        self,
        api: Api,
        database: TestDatabase,
        inbox: Inbox,  # noqa: F811
    ) -> None:
        shop = publish(api, name="Acme")
        sam = f"sam-{secrets.token_hex(3)}@example.com"
        ann = f"ann-{secrets.token_hex(3)}@example.com"
        wanted = shop.api.impact("restore_coral", 3, customer_email=sam, customer_name="Sam")
        quiet = shop.api.impact("restore_coral", 4, customer_email=ann, notify=False)
        direct = shop.api.impact("restore_coral", 5)
        sandbox = api.as_(shop.keys, "sandbox").impact("restore_coral", 6, customer_email=sam)
        ids = [shop.tracking_id(c) for c in (wanted, quiet, direct)]
        advance(api.db, ids, "receive", "transfer")
        assert [p["template"] for p in _outbox(api, shop)] == ["impact_created"]
        advance(api.db, ids, "complete")
        completed = [p for p in _outbox(api, shop) if p["template"] == "impact_completed"]
        assert len(completed) == 1
        assert completed[0]["time_utc"] == wanted["time_utc"]
        assert completed[0]["customer"]["customer_email"] == sam
        assert sandbox["time_utc"] not in {p["time_utc"] for p in completed}

        _deliver(api, database, inbox)
        assert inbox.to(ann) == []
        subjects = sorted(m["Subject"] for m in inbox.to(sam))
        assert subjects == [
            "Acme: 3 coral fragments restored on your behalf",
            "Completed: 3 coral fragments restored on your behalf by Acme",
        ]
        done = next(m for m in inbox.to(sam) if m["Subject"].startswith("Completed"))
        text, html = _parts(done)
        tracking = shop.tracking_id(wanted)
        assert "is completed: 3 coral fragments restored." in text
        assert f"{PUBLIC}/certificate/{tracking}" in text
        assert Page(html).link("Open the certificate") == f"{PUBLIC}/certificate/{tracking}"
        assert Page(html).link("See all your impact with Acme").startswith(f"{PUBLIC}/my-impact/")

    def test_in_the_transaction_that_completes(self, api: Api) -> None:
        shop = publish(api)
        created = shop.api.plant(2, customer_email="lou@example.com")
        advance(api.db, [shop.tracking_id(created)], "receive", "transfer")
        row = impact_row(api.db, shop.keys.user_id, created["time_utc"])
        before = len(_outbox(api, shop))

        def complete_then_fail(session: Any) -> None:
            from sqlalchemy import BigInteger, literal

            changed = advance_chunk(
                session,
                STEPS["complete"],
                [row.id],
                stamp=literal(1, BigInteger),
                actor="test",
                batch_id="b",
            )
            assert changed.changed == 1
            assert len(session.scalars(select(OutboxMessage.id)).all()) > 0
            raise RuntimeError("the chunk fails after the email was queued")

        with pytest.raises(RuntimeError):
            api.db.run_sync(complete_then_fail, write=True)
        assert len(_outbox(api, shop)) == before
        assert impact_row(api.db, shop.keys.user_id, created["time_utc"]).stage == "transferred"

    def test_one_multi_row_insert_per_chunk(self, api: Api) -> None:
        shop = publish(api)
        created = [shop.api.plant(1, customer_email=f"c{n}@example.com") for n in range(25)]
        ids = [shop.tracking_id(c) for c in created]
        advance(api.db, ids, "receive", "transfer")
        inserts: list[bool] = []

        def watch(
            _conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, many: bool
        ) -> None:
            if statement.lstrip().upper().startswith("INSERT INTO OUTBOX"):
                inserts.append(many)

        from openimpact.lifecycle.service import Selection, run_batch

        event.listen(api.db.engine, "before_cursor_execute", watch)
        try:
            report = run_batch(
                api.db, "complete", Selection(tracking_ids=tuple(ids)), actor="t", chunk_size=10
            )
        finally:
            event.remove(api.db.engine, "before_cursor_execute", watch)
        assert report["changed"] == 25
        # Three chunks, each with one statement for its emails and one for
        # its events (webhooks/), never a row at a time.
        assert inserts == [False] * 6
        completed = [p for p in _outbox(api, shop) if p["template"] == "impact_completed"]
        assert len(completed) == 25


class TestNoSmtpServer:
    """With no SMTP server, the worker gives up every email (``no SMTP server
    configured``). When that worker runs in the server's own process, the
    server records its impacts' emails so as it writes them; when the worker
    runs as a process of its own, which may know an SMTP server the server
    does not, they are queued for it."""

    @staticmethod
    def _emails(client: TestClient) -> list[OutboxMessage]:
        from openimpact.accounts.models import Account

        api = Api(client)
        me = api.as_(api.account())
        me.plant(1, customer_email="ana@example.com")
        me.plant(2)  # no customer: no email
        return api.db.run_sync(  # type: ignore[no-any-return]
            lambda s: list(
                s.scalars(
                    select(OutboxMessage)
                    .join(Account, Account.id == OutboxMessage.account_id)
                    .where(Account.user_id == me.account.user_id, OutboxMessage.kind == "email")
                )
            )
        )

    def test_recorded_as_not_sent_when_written_by_a_server_that_runs_the_worker(
        self, database: TestDatabase
    ) -> None:
        from openimpact.app import create_app
        from openimpact.outbox.service import NO_SMTP

        settings = database.settings(background_worker=True, worker_interval_seconds=3600)
        with TestClient(create_app(settings)) as client:
            (email,) = self._emails(client)
            events = client.app.state.db.run_sync(  # type: ignore[attr-defined]
                lambda s: s.scalars(
                    select(OutboxMessage.delivered_ms).where(
                        OutboxMessage.account_id == email.account_id, OutboxMessage.kind == "event"
                    )
                ).all()
            )
        assert (email.failed_ms, email.last_error, email.attempts) == (
            email.created_ms,
            NO_SMTP,
            0,
        )
        assert email.delivered_ms is None and email.payload["customer"]["customer_email"]
        assert len(events) == 2  # the events are written as ever

    @pytest.mark.parametrize(
        "overrides",
        [
            {"background_worker": False},  # the worker is a process of its own
            {"background_worker": True, "smtp_url": "smtp://127.0.0.1:9"},
        ],
        ids=["worker-elsewhere", "smtp-server"],
    )
    def test_queued_otherwise(self, database: TestDatabase, overrides: dict[str, Any]) -> None:
        from openimpact.app import create_app
        from openimpact.outbox.service import NO_SMTP

        settings = database.settings(worker_interval_seconds=3600, **overrides)
        with TestClient(create_app(settings)) as client:
            (email,) = self._emails(client)
        # Queued, not given up: the in-process worker may already have tried it
        # (and noted why it could not send), never as having no SMTP server.
        assert email.failed_ms is None and email.last_error != NO_SMTP
        assert email.delivered_ms is None
