"""users/service.py: passwords, invitations, one-time links, sessions, removal
and the emails that go with them, on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from openimpact.accounts.models import Account
from openimpact.config import Settings
from openimpact.db import Database
from openimpact.errors import NotFound, ValidationFailed
from openimpact.timeutil import now_ms
from openimpact.users import service as users
from openimpact.users.models import User, UserSession, UserToken
from tests.conftest import TestDatabase
from tests.dashboard.helpers import (
    NEW_PASSWORD,
    PASSWORD,
    add_user,
    digest,
    invite_user,
    outbox_payloads,
    reset_token,
    token_row,
    unique_email,
    user_row,
)
from tests.factories import AccountKeys, make_account

DAY_MS = 86_400_000
IDLE_MS = 30 * 60_000


@pytest.fixture(scope="module")
def _engines() -> Iterator[dict[str, Database]]:
    engines: dict[str, Database] = {}
    yield engines
    for engine in engines.values():
        engine.dispose()


@pytest.fixture
def db(database: TestDatabase, _engines: dict[str, Database]) -> Database:
    """The test's database (both backends), without an app around it: these
    are service tests, and the migrations have already run."""
    if database.url not in _engines:
        _engines[database.url] = Database(database.settings().sqlalchemy_url, pool_size=2)
    return _engines[database.url]


def _in(db: Database, fn: Any, *args: Any) -> Any:
    return db.run_sync(fn, *args, write=True)


def _account(session: Session, account: AccountKeys) -> Account:
    row = session.scalar(select(Account).where(Account.user_id == account.user_id))
    assert row is not None
    return row


def _start(db: Database, user_pk: int, max_ms: int = 7 * DAY_MS) -> str:
    return _in(db, lambda s: users.start_session(s, user_pk, max_ms=max_ms))


def _resolve(db: Database, token: str, idle_ms: int = IDLE_MS) -> users.Member | None:
    return db.run_sync(lambda s: users.resolve_session(s, token, idle_ms=idle_ms))


def _move_session(db: Database, token: str, **values: int) -> None:
    from sqlalchemy import update

    _in(
        db,
        lambda s: s.execute(
            update(UserSession).where(UserSession.token_hash == digest(token)).values(**values)
        ),
    )


class TestPasswordHashing:
    def test_passwords_are_argon2id_with_the_rfc_9106_second_recommendation(
        self, db: Database, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.undo()  # the service's own hasher, not the tests' cheap one
        account = make_account(db)
        user_pk, _ = add_user(db, account)
        stored = user_row(db, user_pk)
        assert stored is not None and stored.password_hash is not None
        assert stored.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
        assert PASSWORD not in stored.password_hash
        assert PasswordHasher().verify(stored.password_hash, PASSWORD)

    def test_an_outdated_hash_is_upgraded_at_the_next_sign_in(
        self, db: Database, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.undo()
        account = make_account(db)
        user_pk, email = add_user(db, account)
        weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)

        def weaken(session: Session) -> None:
            user = session.get(User, user_pk)
            assert user is not None
            user.password_hash = weak

        _in(db, weaken)
        assert _in(db, users.authenticate, email, PASSWORD) is not None
        upgraded = user_row(db, user_pk)
        assert upgraded is not None and upgraded.password_hash != weak
        assert upgraded.password_hash is not None
        assert upgraded.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")


class TestPasswordRules:
    @pytest.mark.parametrize(
        ("password", "message"),
        [
            ("123456789", "password: must be at least 10 characters long"),
            ("x" * 1001, "password: must be at most 1000 characters long"),
            (" " * 12, "password: must not be only spaces"),
        ],
    )
    def test_a_password_that_breaks_a_rule_is_refused_with_the_rule(
        self, password: str, message: str
    ) -> None:
        with pytest.raises(ValidationFailed) as refused:
            users.check_password(password)
        assert refused.value.message == message

    def test_the_limits_themselves_are_allowed(self) -> None:
        assert users.check_password("x" * 10) == "x" * 10
        assert users.check_password("x" * 1000) == "x" * 1000


class TestAuthenticate:
    def test_the_right_password_names_the_user_whatever_the_case_of_the_email(
        self, db: Database
    ) -> None:
        account = make_account(db)
        user_pk, email = add_user(db, account)
        for typed in (email, email.upper(), f"  {email} "):
            found = _in(db, users.authenticate, typed, PASSWORD)
            assert found is not None and found.id == user_pk

    def test_a_wrong_password_an_unknown_email_and_an_invited_user_all_get_none(
        self, db: Database
    ) -> None:
        account = make_account(db)
        _, email = add_user(db, account)
        _, invited, _ = invite_user(db, account)
        assert _in(db, users.authenticate, email, PASSWORD + "!") is None
        assert _in(db, users.authenticate, unique_email("nobody"), PASSWORD) is None
        assert _in(db, users.authenticate, invited, "") is None
        assert _in(db, users.authenticate, invited, PASSWORD) is None


class TestInvite:
    def test_an_invitation_adds_a_user_without_a_password_and_stores_only_a_hash(
        self, db: Database
    ) -> None:
        account = make_account(db)
        user_pk, email, token = invite_user(db, account, role="owner")
        user = user_row(db, user_pk)
        assert user is not None
        assert (user.email, user.role, user.password_hash) == (email, "owner", None)
        row = token_row(db, token)
        assert row is not None and row.purpose == "invite" and row.used_ms is None
        assert row.expires_ms - row.created_ms == 7 * DAY_MS
        stored = db.run_sync(lambda s: [r.token_hash for r in s.scalars(select(UserToken))])
        assert token not in stored and digest(token) in stored

    def test_inviting_again_replaces_the_link_and_the_role(self, db: Database) -> None:
        account = make_account(db)
        user_pk, email, first = invite_user(db, account, role="member")
        again_pk, _, second = invite_user(db, account, email=email.upper(), role="owner")
        assert again_pk == user_pk
        assert db.run_sync(users.token_user, first, "invite") is None
        user = db.run_sync(users.token_user, second, "invite")
        assert user is not None and user.id == user_pk and user.role == "owner"

    @pytest.mark.parametrize(
        ("email", "role", "message"),
        [
            ("not-an-email", "member", "email: enter an email address like name@example.com"),
            ("a@b", "member", "email: enter an email address like name@example.com"),
            ("x@example.com", "admin", "role: must be one of owner, member"),
        ],
    )
    def test_bad_input_is_refused_naming_the_field(
        self, db: Database, email: str, role: str, message: str
    ) -> None:
        account = make_account(db)

        def invite(session: Session) -> None:
            users.invite(session, _account(session, account), email, role)

        with pytest.raises(ValidationFailed) as refused:
            _in(db, invite)
        assert refused.value.message == message

    def test_an_active_member_is_not_invited_again(self, db: Database) -> None:
        account = make_account(db)
        _, email = add_user(db, account, role="member")
        with pytest.raises(ValidationFailed) as refused:
            invite_user(db, account, email=email)
        assert (
            refused.value.message
            == f"email: the address {email} is already a member of this account"
        )

    def test_an_address_of_another_account_is_refused_without_saying_so(self, db: Database) -> None:
        mine, theirs = make_account(db), make_account(db)
        _, email = add_user(db, theirs)
        with pytest.raises(ValidationFailed) as refused:
            invite_user(db, mine, email=email)
        assert refused.value.message == "email: this address cannot be invited; use another address"
        assert theirs.user_id not in refused.value.message
        count = db.run_sync(
            lambda s: s.scalar(select(func.count()).select_from(User).where(User.email == email))
        )
        assert count == 1


class TestOneTimeLinks:
    def test_an_invitation_sets_the_password_once(self, db: Database) -> None:
        account = make_account(db)
        user_pk, email, token = invite_user(db, account)
        used = _in(db, users.use_token, token, "invite", PASSWORD)
        assert used.id == user_pk
        assert _in(db, users.authenticate, email, PASSWORD) is not None
        with pytest.raises(NotFound):
            _in(db, users.use_token, token, "invite", NEW_PASSWORD)
        assert _in(db, users.authenticate, email, NEW_PASSWORD) is None

    def test_an_expired_link_works_no_more(self, db: Database) -> None:
        account = make_account(db)
        _, email, token = invite_user(db, account)
        from sqlalchemy import update

        _in(
            db,
            lambda s: s.execute(
                update(UserToken)
                .where(UserToken.token_hash == digest(token))
                .values(expires_ms=now_ms())
            ),
        )
        assert db.run_sync(users.token_user, token, "invite") is None
        with pytest.raises(NotFound):
            _in(db, users.use_token, token, "invite", PASSWORD)
        assert _in(db, users.authenticate, email, PASSWORD) is None

    def test_a_link_works_only_for_its_own_purpose(self, db: Database) -> None:
        account = make_account(db)
        _, _, invitation = invite_user(db, account)
        with pytest.raises(NotFound):
            _in(db, users.use_token, invitation, "reset", PASSWORD)
        assert db.run_sync(users.token_user, invitation, "invite") is not None

    def test_a_refused_password_leaves_the_link_usable(self, db: Database) -> None:
        account = make_account(db)
        user_pk, _, token = invite_user(db, account)
        with pytest.raises(ValidationFailed):
            _in(db, users.use_token, token, "invite", "short")
        row = token_row(db, token)
        assert row is not None and row.used_ms is None
        assert _in(db, users.use_token, token, "invite", PASSWORD).id == user_pk

    def test_a_reset_lasts_one_hour_and_ends_every_session(self, db: Database) -> None:
        account = make_account(db)
        user_pk, email = add_user(db, account)
        cookie = _start(db, user_pk)
        token = reset_token(db, email)
        row = token_row(db, token)
        assert row is not None and row.expires_ms - row.created_ms == 3_600_000
        _in(db, users.use_token, token, "reset", NEW_PASSWORD)
        assert _resolve(db, cookie) is None
        assert _in(db, users.authenticate, email, PASSWORD) is None
        assert _in(db, users.authenticate, email, NEW_PASSWORD) is not None

    def test_a_new_reset_link_replaces_the_previous_one(self, db: Database) -> None:
        account = make_account(db)
        _, email = add_user(db, account)
        first = reset_token(db, email)
        second = reset_token(db, email)
        assert db.run_sync(users.token_user, first, "reset") is None
        assert db.run_sync(users.token_user, second, "reset") is not None

    def test_no_reset_for_an_unknown_address_or_a_user_still_invited(self, db: Database) -> None:
        account = make_account(db)
        _, invited, _ = invite_user(db, account)
        assert _in(db, users.request_reset, unique_email("nobody")) is None
        assert _in(db, users.request_reset, invited) is None

    def test_junk_tokens_name_nobody(self, db: Database) -> None:
        account = make_account(db)
        _, _, real = invite_user(db, account)
        for token in ("", "x" * 101, real[:-1], real + "x"):
            assert db.run_sync(users.token_user, token, "invite") is None
        assert db.run_sync(users.token_user, real, "invite") is not None


class TestSessions:
    def test_a_session_names_the_member_and_its_account(self, db: Database) -> None:
        account = make_account(db, name="Shop of Sessions")
        user_pk, email = add_user(db, account, role="member")
        cookie = _start(db, user_pk)
        member = _resolve(db, cookie)
        assert member is not None
        assert (member.user_pk, member.email, member.role, member.env) == (
            user_pk,
            email,
            "member",
            "production",
        )
        assert (member.account_user_id, member.account_name) == (
            account.user_id,
            "Shop of Sessions",
        )
        assert not member.is_owner and not member.stale
        assert len(member.csrf_token) >= 32

    def test_only_a_hash_of_the_cookie_is_stored_and_each_session_is_new(
        self, db: Database
    ) -> None:
        account = make_account(db)
        user_pk, _ = add_user(db, account)
        first, second = _start(db, user_pk), _start(db, user_pk)
        assert first != second
        rows = db.run_sync(
            lambda s: list(s.scalars(select(UserSession).where(UserSession.user_id == user_pk)))
        )
        assert {r.token_hash for r in rows} == {digest(first), digest(second)}
        assert len({r.csrf_token for r in rows}) == 2

    def test_idle_for_too_long_ends_the_session(self, db: Database) -> None:
        account = make_account(db)
        user_pk, _ = add_user(db, account)
        cookie = _start(db, user_pk)
        _move_session(db, cookie, last_seen_ms=now_ms() - IDLE_MS + 10_000)
        member = _resolve(db, cookie)
        assert member is not None and member.stale  # in use: the idle clock is refreshed
        _move_session(db, cookie, last_seen_ms=now_ms() - IDLE_MS - 1)
        assert _resolve(db, cookie) is None

    def test_touching_a_session_restarts_its_idle_clock(self, db: Database) -> None:
        account = make_account(db)
        user_pk, _ = add_user(db, account)
        cookie = _start(db, user_pk)
        _move_session(db, cookie, last_seen_ms=now_ms() - IDLE_MS + 10_000)
        member = _resolve(db, cookie)
        assert member is not None
        _in(db, users.touch_session, member.session_id)
        refreshed = _resolve(db, cookie)
        assert refreshed is not None and not refreshed.stale

    def test_the_absolute_expiry_ends_a_session_in_use(self, db: Database) -> None:
        account = make_account(db)
        user_pk, _ = add_user(db, account)
        cookie = _start(db, user_pk, max_ms=3_600_000)
        row = db.run_sync(
            lambda s: s.scalar(select(UserSession).where(UserSession.token_hash == digest(cookie)))
        )
        assert row is not None and row.expires_ms - row.created_ms == 3_600_000
        _move_session(db, cookie, expires_ms=now_ms() + 5_000)
        assert _resolve(db, cookie) is not None
        _move_session(db, cookie, expires_ms=now_ms() - 1, last_seen_ms=now_ms())
        assert _resolve(db, cookie) is None

    def test_ending_and_revoking_sessions(self, db: Database) -> None:
        account = make_account(db)
        user_pk, _ = add_user(db, account)
        other_pk, _ = add_user(db, account)
        one, two, theirs = (
            _start(db, user_pk),
            _start(db, user_pk),
            _start(db, other_pk),
        )
        member = _resolve(db, one)
        assert member is not None
        _in(db, users.end_session, member.session_id)
        assert _resolve(db, one) is None and _resolve(db, two) is not None
        assert _in(db, users.revoke_sessions, user_pk) == 1
        assert _resolve(db, two) is None
        assert _resolve(db, theirs) is not None

    def test_a_password_change_ends_every_session_of_the_user(self, db: Database) -> None:
        account = make_account(db)
        user_pk, email = add_user(db, account)
        cookie = _start(db, user_pk)
        with pytest.raises(ValidationFailed) as refused:
            _in(db, users.change_password, user_pk, "wrong password", NEW_PASSWORD)
        assert refused.value.message == "current_password: is not your current password"
        with pytest.raises(ValidationFailed) as refused:
            _in(db, users.change_password, user_pk, PASSWORD, "short")
        assert refused.value.message.startswith("new_password: must be at least 10")
        assert _resolve(db, cookie) is not None
        _in(db, users.change_password, user_pk, PASSWORD, NEW_PASSWORD)
        assert _resolve(db, cookie) is None
        assert _in(db, users.authenticate, email, NEW_PASSWORD) is not None

    def test_the_environment_switch_is_per_session(self, db: Database) -> None:
        account = make_account(db)
        user_pk, _ = add_user(db, account)
        one, two = _start(db, user_pk), _start(db, user_pk)
        member = _resolve(db, one)
        assert member is not None
        _in(db, users.switch_env, member.session_id, "sandbox")
        switched, untouched = _resolve(db, one), _resolve(db, two)
        assert switched is not None and switched.env == "sandbox"
        assert untouched is not None and untouched.env == "production"
        with pytest.raises(ValidationFailed):
            _in(db, users.switch_env, member.session_id, "staging")

    def test_junk_cookies_name_nobody(self, db: Database) -> None:
        account = make_account(db)
        user_pk, _ = add_user(db, account)
        real = _start(db, user_pk)
        for cookie in ("", "x" * 101, real[:-1], real + "x"):
            assert _resolve(db, cookie) is None
        assert _resolve(db, real) is not None


class TestRemove:
    def test_the_last_owner_who_can_sign_in_stays(self, db: Database) -> None:
        account = make_account(db)
        owner_pk, _ = add_user(db, account, role="owner")
        invite_user(db, account, role="owner")  # cannot sign in yet: does not count

        def remove(session: Session, pk: int) -> None:
            acc = _account(session, account)
            users.remove(session, acc.id, users.user_of_account(session, acc.id, pk))

        with pytest.raises(ValidationFailed) as refused:
            _in(db, remove, owner_pk)
        assert "last owner who can sign in cannot be removed" in refused.value.message
        assert user_row(db, owner_pk) is not None

        second_pk, _ = add_user(db, account, role="owner")
        cookie = _start(db, owner_pk)
        _in(db, remove, owner_pk)
        assert user_row(db, owner_pk) is None
        assert _resolve(db, cookie) is None
        assert user_row(db, second_pk) is not None

    def test_a_user_of_another_account_is_not_found(self, db: Database) -> None:
        mine, theirs = make_account(db), make_account(db)
        their_pk, _ = add_user(db, theirs)

        def lookup(session: Session, pk: int) -> User:
            return users.user_of_account(session, _account(session, mine).id, pk)

        for pk in (their_pk, 2**62):
            with pytest.raises(NotFound) as missing:
                db.run_sync(lookup, pk)
            assert missing.value.message == "no such user in this account"


class TestEmails:
    def _settings(self, smtp: bool) -> Settings:
        return Settings(smtp_url="smtp://mail.example.com:25" if smtp else None)

    def test_an_invitation_is_emailed_through_the_outbox_when_smtp_is_set(
        self, db: Database
    ) -> None:
        account = make_account(db, name="Mail Shop")
        email = unique_email("invitee")

        def send(session: Session) -> users.SentInvitation:
            return users.send_invite(
                session,
                _account(session, account),
                email,
                "owner",
                "https://oi.test/",
                self._settings(True),
            )

        sent = _in(db, send)
        assert sent.emailed and sent.url.startswith("https://oi.test/dashboard/invite/")
        assert outbox_payloads(db, account, "user_invite") == [
            {
                "template": "user_invite",
                "to": email,
                "account_name": "Mail Shop",
                "role": "owner",
                "url": sent.url,
            }
        ]

    def test_nothing_is_queued_without_smtp(self, db: Database) -> None:
        account = make_account(db)
        _, email = add_user(db, account)

        def send(session: Session) -> tuple[users.SentInvitation, bool]:
            invited = users.send_invite(
                session,
                _account(session, account),
                unique_email(),
                "member",
                "http://x",
                self._settings(False),
            )
            return invited, users.send_reset(session, email, "http://x", self._settings(False))

        invited, reset_sent = _in(db, send)
        assert not invited.emailed and not reset_sent
        assert outbox_payloads(db, account, "user_invite") == []
        assert outbox_payloads(db, account, "user_reset") == []

    def test_a_reset_is_emailed_only_to_a_user_who_can_sign_in(self, db: Database) -> None:
        account = make_account(db, name="Reset Shop")
        _, email = add_user(db, account)
        settings = self._settings(True)
        assert _in(db, users.send_reset, email.upper(), "http://x/", settings) is True
        assert _in(db, users.send_reset, unique_email("nobody"), "http://x/", settings) is False
        (payload,) = outbox_payloads(db, account, "user_reset")
        assert payload["to"] == email and payload["account_name"] == "Reset Shop"
        token = payload["url"].removeprefix("http://x/dashboard/reset/")
        assert db.run_sync(users.token_user, token, "reset") is not None

    def test_the_email_and_the_invitation_share_the_callers_transaction(self, db: Database) -> None:
        account = make_account(db)
        email = unique_email("rolled-back")

        class Boom(Exception):
            pass

        def send_then_fail(session: Session) -> None:
            users.send_invite(
                session,
                _account(session, account),
                email,
                "member",
                "http://x",
                self._settings(True),
            )
            raise Boom

        with pytest.raises(Boom):
            _in(db, send_then_fail)
        assert outbox_payloads(db, account, "user_invite") == []
        gone = db.run_sync(
            lambda s: s.scalar(select(func.count()).select_from(User).where(User.email == email))
        )
        assert gone == 0
