"""Invitation and reset emails, delivered by the worker through a real local
SMTP server, with links that work."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi.testclient import TestClient

from openimpact.accounts.service import get_account
from openimpact.users import service as users
from tests.conftest import TestDatabase
from tests.factories import Api
from tests.test_worker import Inbox, deliver_all, inbox  # noqa: F401 (fixture)


def _smtp(database: TestDatabase, box: Inbox) -> Any:
    return database.settings(
        smtp_url=f"smtp://127.0.0.1:{box.port}", mail_from="dashboard@example.org"
    )


def _text(message: Any) -> str:
    return str(message.get_body(preferencelist=("plain",)).get_content())


def _html(message: Any) -> str:
    return str(message.get_body(preferencelist=("html",)).get_content())


class TestInvitationEmail:
    def test_the_invitee_gets_a_link_that_opens_the_set_password_page(
        self,
        api: Api,
        client: TestClient,
        database: TestDatabase,
        inbox: Inbox,  # noqa: F811
    ) -> None:
        settings = _smtp(database, inbox)
        account = api.account(name="Shop <b>& Co</b>")
        email = f"new-{secrets.token_hex(4)}@example.com"
        sent = api.db.run_sync(
            lambda s: users.send_invite(
                s, get_account(s, account.user_id), email, "member", "http://testserver", settings
            ),
            write=True,
        )
        assert sent.emailed
        assert deliver_all(api.db, settings) >= 1
        [message] = inbox.to(email)
        assert (
            message["Subject"] == "You are invited to the OpenImpact dashboard of Shop <b>& Co</b>"
        )
        assert message["From"] == "dashboard@example.org"
        text, html = _text(message), _html(message)
        assert sent.url in text and "7 days" in text
        assert f'href="{sent.url}"' in html
        # The business name is text in the HTML part, never markup.
        assert "Shop &lt;b&gt;&amp; Co&lt;/b&gt;" in html and "<b>& Co" not in html
        page = client.get(sent.url.removeprefix("http://testserver"))
        assert page.status_code == 200
        assert "Set password" in page.text


class TestResetEmail:
    def test_a_user_who_can_sign_in_gets_a_one_hour_link(
        self,
        api: Api,
        client: TestClient,
        database: TestDatabase,
        inbox: Inbox,  # noqa: F811
    ) -> None:
        settings = _smtp(database, inbox)
        account = api.account()
        email = f"owner-{secrets.token_hex(4)}@example.com"
        api.db.run_sync(
            lambda s: users.add_user(
                s, get_account(s, account.user_id), email, "owner", "a long enough password"
            ),
            write=True,
        )
        assert api.db.run_sync(
            lambda s: users.send_reset(s, email, "http://testserver", settings), write=True
        )
        deliver_all(api.db, settings)
        [message] = inbox.to(email)
        assert message["Subject"] == "Set a new password for your OpenImpact dashboard"
        text = _text(message)
        assert "one hour" in text
        link = next(line for line in text.splitlines() if "/dashboard/reset/" in line).strip()
        page = client.get(link.removeprefix("http://testserver"))
        assert page.status_code == 200
        assert "Choose a new password" in page.text

    def test_no_email_for_an_address_without_a_user(
        self,
        api: Api,
        database: TestDatabase,
        inbox: Inbox,  # noqa: F811
    ) -> None:
        settings = _smtp(database, inbox)
        nobody = f"nobody-{secrets.token_hex(4)}@example.com"
        assert not api.db.run_sync(
            lambda s: users.send_reset(s, nobody, "http://testserver", settings), write=True
        )
        deliver_all(api.db, settings)
        assert inbox.to(nobody) == []
