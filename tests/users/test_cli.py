"""``openimpact users invite|list|remove|reset-link``, run in-process against
the test's database (the way tests/accounts/test_cli.py runs the command)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient

from openimpact.cli import main
from openimpact.config import get_settings
from tests.conftest import TestDatabase
from tests.dashboard.helpers import (
    PASSWORD,
    add_user,
    browser,
    csrf_token,
    db_of,
    signed_in,
    unique_email,
    visible_text,
)
from tests.factories import make_account

Cli = Callable[[Sequence[str]], int]


@pytest.fixture
def cli(database: TestDatabase, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    monkeypatch.setenv("DATABASE_URL", database.url)
    monkeypatch.delenv("OPENIMPACT_PUBLIC_URL", raising=False)
    monkeypatch.delenv("OPENIMPACT_SMTP_URL", raising=False)
    get_settings.cache_clear()
    yield main
    get_settings.cache_clear()


def _out(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().out


def _accept(client: TestClient, url: str, password: str = PASSWORD) -> Any:
    """Open an invitation or reset link as its recipient and set a password."""
    path = url[url.index("/dashboard/") :]
    who = browser(client)
    page = who.get(path)
    assert page.status_code == 200, page.text
    done = who.post(path, data={"csrf_token": csrf_token(page), "password": password})
    return page, done, who


class TestInvite:
    def test_json_has_exactly_the_documented_fields_and_the_link_signs_in(
        self, cli: Cli, capsys: pytest.CaptureFixture[str], client: TestClient
    ) -> None:
        account = make_account(db_of(client))
        email = unique_email("cli")
        args = ["users", "invite", "--user-id", account.user_id, "--email", email]
        assert cli([*args, "--role", "owner", "--json"]) == 0
        invited = json.loads(_out(capsys))
        assert set(invited) == {"user_id", "email", "role", "invite_url"}
        assert (invited["user_id"], invited["email"], invited["role"]) == (
            account.user_id,
            email,
            "owner",
        )
        assert invited["invite_url"].startswith("http://127.0.0.1:8000/dashboard/invite/")

        page, done, who = _accept(client, invited["invite_url"])
        assert email in visible_text(page.text)
        assert done.status_code == 303 and done.headers["location"] == "/dashboard"
        team = who.get("/dashboard/team")
        assert team.status_code == 200
        assert f"{email} (you) Owner Active" in visible_text(team.text)

    def test_the_link_uses_the_base_url_or_else_the_public_url(
        self,
        cli: Cli,
        capsys: pytest.CaptureFixture[str],
        client: TestClient,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        account = make_account(db_of(client))
        args = ["users", "invite", "--user-id", account.user_id, "--json"]
        assert cli([*args, "--email", unique_email(), "--base-url", "http://shop.test:9/"]) == 0
        assert json.loads(_out(capsys))["invite_url"].startswith(
            "http://shop.test:9/dashboard/invite/"
        )
        monkeypatch.setenv("OPENIMPACT_PUBLIC_URL", "https://impact.example.org")
        get_settings.cache_clear()
        assert cli([*args, "--email", unique_email()]) == 0
        assert json.loads(_out(capsys))["invite_url"].startswith(
            "https://impact.example.org/dashboard/invite/"
        )

    def test_plain_output_names_the_person_and_the_link(
        self, cli: Cli, capsys: pytest.CaptureFixture[str], client: TestClient
    ) -> None:
        account = make_account(db_of(client))
        email = unique_email()
        assert cli(["users", "invite", "--user-id", account.user_id, "--email", email]) == 0
        lines = _out(capsys).splitlines()
        assert lines[0] == f"Invited {email} as member of {account.user_id}."
        assert lines[1].strip().startswith("http://127.0.0.1:8000/dashboard/invite/")
        assert lines[2] == "The link works once, for 7 days."
        _, done, _ = _accept(client, lines[1].strip())
        assert done.status_code == 303


class TestList:
    def test_json_lists_every_user_with_its_status(
        self, cli: Cli, capsys: pytest.CaptureFixture[str], client: TestClient
    ) -> None:
        db = db_of(client)
        account = make_account(db)
        owner_pk, owner = add_user(db, account, role="owner")
        invited = unique_email("invited")
        cli(["users", "invite", "--user-id", account.user_id, "--email", invited])
        _out(capsys)
        assert cli(["users", "list", "--user-id", account.user_id, "--json"]) == 0
        rows = json.loads(_out(capsys))
        assert [(r["email"], r["role"], r["status"]) for r in rows] == [
            (owner, "owner", "active"),
            (invited, "member", "invited"),
        ]
        assert rows[0]["id"] == owner_pk
        assert all(set(r) == {"id", "email", "role", "status", "created_on"} for r in rows)
        assert all(r["created_on"].endswith("Z") for r in rows)

    def test_plain_output(
        self, cli: Cli, capsys: pytest.CaptureFixture[str], client: TestClient
    ) -> None:
        db = db_of(client)
        account = make_account(db)
        assert cli(["users", "list", "--user-id", account.user_id]) == 0
        assert _out(capsys).strip() == (
            f"{account.user_id} has no dashboard users; invite one with `openimpact users invite`."
        )
        _, email = add_user(db, account, role="member")
        assert cli(["users", "list", "--user-id", account.user_id]) == 0
        (line,) = _out(capsys).splitlines()
        assert line.split()[:3] == [email, "member", "active"]


class TestRemove:
    def test_a_removed_user_is_gone_and_signed_out(
        self, cli: Cli, capsys: pytest.CaptureFixture[str], client: TestClient
    ) -> None:
        db = db_of(client)
        account = make_account(db)
        add_user(db, account, role="owner")
        member = signed_in(client, account, role="member")
        assert member.client.get("/dashboard").status_code == 200
        assert cli(["users", "remove", "--user-id", account.user_id, "--email", member.email]) == 0
        assert _out(capsys).strip() == (
            f"Removed {member.email} from {account.user_id}; their sessions have ended."
        )
        refused = member.client.get("/dashboard")
        assert refused.status_code == 303
        assert refused.headers["location"].startswith("/dashboard/login")
        cli(["users", "list", "--user-id", account.user_id, "--json"])
        assert member.email not in [row["email"] for row in json.loads(_out(capsys))]

    def test_the_last_owner_is_not_removed(
        self, cli: Cli, capsys: pytest.CaptureFixture[str], client: TestClient
    ) -> None:
        db = db_of(client)
        account = make_account(db)
        _, owner = add_user(db, account, role="owner")
        assert cli(["users", "remove", "--user-id", account.user_id, "--email", owner]) == 2
        assert "the last owner who can sign in cannot be removed" in capsys.readouterr().err
        cli(["users", "list", "--user-id", account.user_id, "--json"])
        assert [row["email"] for row in json.loads(_out(capsys))] == [owner]


class TestResetLink:
    def test_the_printed_link_sets_a_new_password_once(
        self, cli: Cli, capsys: pytest.CaptureFixture[str], client: TestClient
    ) -> None:
        db = db_of(client)
        account = make_account(db)
        _, email = add_user(db, account)
        assert cli(["users", "reset-link", "--email", email.upper()]) == 0
        url, note = _out(capsys).splitlines()
        assert url.startswith("http://127.0.0.1:8000/dashboard/reset/")
        assert note == "The link works once, for one hour."
        _, done, _ = _accept(client, url, "a brand new passphrase")
        assert done.status_code == 303
        path = url[url.index("/dashboard/") :]
        assert browser(client).get(path).status_code == 404

    def test_no_link_for_an_address_without_a_password(
        self, cli: Cli, capsys: pytest.CaptureFixture[str], client: TestClient
    ) -> None:
        account = make_account(db_of(client))
        invited = unique_email("invited")
        cli(["users", "invite", "--user-id", account.user_id, "--email", invited])
        capsys.readouterr()
        for email in (invited, unique_email("nobody")):
            assert cli(["users", "reset-link", "--email", email]) == 2
            err = capsys.readouterr().err
            assert err.strip() == (
                f"error: no dashboard user with email {email} has set a password yet"
            )


class TestErrors:
    def test_errors_exit_2_with_a_clear_message(
        self, cli: Cli, capsys: pytest.CaptureFixture[str], client: TestClient
    ) -> None:
        account = make_account(db_of(client))
        invite = ["users", "invite", "--user-id"]
        assert cli([*invite, "U0", "--email", unique_email()]) == 2
        assert capsys.readouterr().err.strip() == "error: no account with user_id U0"
        assert cli([*invite, account.user_id, "--email", "not-an-email"]) == 2
        assert capsys.readouterr().err.strip() == (
            "error: email: enter an email address like name@example.com"
        )
        assert cli(["users", "list", "--user-id", "U0"]) == 2
        assert "no account with user_id U0" in capsys.readouterr().err
        nobody = unique_email("nobody")
        assert cli(["users", "remove", "--user-id", account.user_id, "--email", nobody]) == 2
        assert capsys.readouterr().err.strip() == f"error: no user {nobody} in this account"

    def test_an_unknown_role_is_refused_by_the_parser(
        self, cli: Cli, capsys: pytest.CaptureFixture[str], client: TestClient
    ) -> None:
        account = make_account(db_of(client))
        email = unique_email()
        with pytest.raises(SystemExit) as exited:
            cli(
                [
                    "users",
                    "invite",
                    "--user-id",
                    account.user_id,
                    "--email",
                    email,
                    "--role",
                    "admin",
                ]
            )
        assert exited.value.code == 2
        assert "invalid choice: 'admin'" in capsys.readouterr().err
        assert cli(["users", "list", "--user-id", account.user_id, "--json"]) == 0
        assert json.loads(_out(capsys)) == []
