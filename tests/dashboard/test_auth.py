"""Who may use the dashboard: sign-in, sessions, sign-out, expiry, password
changes, throttling, CSRF on every state-changing route, and the one-time
invitation and reset links with their emails. Each test runs on SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import routing
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from openimpact.accounts.models import Account, ApiKey
from openimpact.config import Settings
from openimpact.db import Database
from openimpact.impacts.models import Impact
from openimpact.outbox.models import OutboxMessage
from openimpact.timeutil import now_ms
from openimpact.users.models import User, UserSession, UserToken
from tests.conftest import TestDatabase
from tests.dashboard.helpers import (
    FORM_ERROR,
    NEW_PASSWORD,
    PASSWORD,
    Dashboard,
    Planned,
    add_user,
    again,
    anonymous,
    browser,
    button,
    csrf_token,
    db_of,
    field_error,
    form_field,
    invite_user,
    key_prefixes,
    move_session,
    move_token,
    outbox_payloads,
    record,
    reset_token,
    session_row,
    set_cookie,
    sign_in,
    signed_in,
    token_row,
    unique_email,
    user_row,
    visible_text,
)
from tests.factories import AccountKeys, make_account

FORBIDDEN = "This form has expired or did not come from this site"
NOT_RIGHT = "The email or password is not right. Check them and try again."


def _user(client: TestClient, role: str = "owner") -> tuple[AccountKeys, int, str]:
    db = db_of(client)
    account = make_account(db)
    user_pk, email = add_user(db, account, role=role)
    return account, user_pk, email


def _signed_out(response: Any) -> bool:
    return response.status_code == 303 and response.headers["location"].startswith(
        "/dashboard/login"
    )


class TestSignIn:
    def test_the_right_password_opens_a_session_with_a_cookie_for_the_dashboard_only(
        self, client: TestClient
    ) -> None:
        _, user_pk, email = _user(client)
        who = browser(client)
        response = sign_in(who, email, PASSWORD)
        assert response.status_code == 303
        assert response.headers["location"] == "/dashboard"
        cookie = set_cookie(response, "oi_session")
        assert cookie is not None
        assert cookie["httponly"] == "true"
        assert cookie["samesite"].lower() == "lax"
        assert cookie["path"] == "/dashboard"
        assert "secure" not in cookie  # the public URL is not https
        assert cookie["max-age"] == str(168 * 3600)
        anonymous_token = set_cookie(response, "oi_csrf")
        assert anonymous_token is not None and anonymous_token["max-age"] == "0"
        stored = session_row(db_of(client), cookie["value"])
        assert stored is not None and stored.user_id == user_pk and stored.revoked_ms is None

        page = who.get("/dashboard")
        assert page.status_code == 200
        assert email in visible_text(page.text)
        assert "Acme" in visible_text(page.text)

    def test_the_sign_in_page_has_labelled_fields(self, client: TestClient) -> None:
        page = browser(client).get("/dashboard/login")
        assert page.status_code == 200
        form_token = set_cookie(page, "oi_csrf")
        assert form_token is not None and form_token["httponly"] == "true"
        assert form_token["samesite"].lower() == "strict" and form_token["path"] == "/dashboard"
        assert form_token["value"] == csrf_token(page)
        assert 'type="email"' in form_field(page.text, "email")
        assert 'type="password"' in form_field(page.text, "password")
        assert 'type="submit"' in button(page.text, "Sign in")

    def test_after_signing_in_the_person_is_back_on_the_page_they_asked_for(
        self, client: TestClient
    ) -> None:
        _, _, email = _user(client)
        who = browser(client)
        asked = who.get("/dashboard/customers", params={"email": "jane"})
        assert asked.status_code == 303
        assert (
            asked.headers["location"] == "/dashboard/login?next=/dashboard/customers%3Femail%3Djane"
        )
        form = who.get(asked.headers["location"])
        assert 'name="next" value="/dashboard/customers?email=jane"' in form.text
        done = sign_in(who, email, PASSWORD, next="/dashboard/customers?email=jane")
        assert done.headers["location"] == "/dashboard/customers?email=jane"
        # Signed in, the sign-in page sends the person on as well.
        again = who.get("/dashboard/login", params={"next": "/dashboard/team"})
        assert (again.status_code, again.headers["location"]) == (303, "/dashboard/team")

    @pytest.mark.parametrize(
        "next_url",
        [
            "https://evil.example/dashboard",
            "//evil.example/dashboard",
            "/dashboard//evil.example",
            "/dashboard\\@evil.example",
            "/v1/whoami",
            "/dashboard/login?next=/x",
        ],
    )
    def test_next_never_leads_off_the_dashboard(self, client: TestClient, next_url: str) -> None:
        _, _, email = _user(client)
        done = sign_in(browser(client), email, PASSWORD, next=next_url)
        assert (done.status_code, done.headers["location"]) == (303, "/dashboard")


class TestOverHttps:
    @pytest.fixture
    def settings(self, database: TestDatabase) -> Settings:
        return database.settings(public_url="https://impact.example.org")

    def test_cookies_are_secure_when_the_public_url_is_https(self, client: TestClient) -> None:
        _, _, email = _user(client)
        who = browser(client, "https://testserver")
        page = who.get("/dashboard/login")
        form_token = set_cookie(page, "oi_csrf")
        assert form_token is not None and form_token["secure"] == "true"
        done = sign_in(who, email, PASSWORD)
        assert done.status_code == 303
        cookie = set_cookie(done, "oi_session")
        assert cookie is not None and cookie["secure"] == "true" and cookie["httponly"] == "true"
        assert who.get("/dashboard").status_code == 200


class TestSameAnswerForWrongEmailAndWrongPassword:
    def test_the_answers_are_identical(self, client: TestClient) -> None:
        account, _, email = _user(client)
        _, invited, _ = invite_user(db_of(client), account)
        who = browser(client)
        unknown = unique_email("nobody")
        answers = {
            "unknown email": (unknown, sign_in(who, unknown, PASSWORD)),
            "wrong password": (email, sign_in(who, email, PASSWORD + "?")),
            "invited, no password yet": (invited, sign_in(who, invited, PASSWORD)),
        }
        bodies = set()
        for label, (typed, response) in answers.items():
            assert response.status_code == FORM_ERROR, label
            assert set_cookie(response, "oi_session") is None, label
            assert NOT_RIGHT in visible_text(response.text), label
            # The page keeps what was typed in the email field; all else is the same.
            assert f'value="{typed}"' in response.text
            bodies.add(response.text.replace(f'value="{typed}"', 'value="EMAIL"'))
        assert len(bodies) == 1


class TestSessionFixation:
    def test_a_cookie_brought_along_is_never_the_session_after_sign_in(
        self, client: TestClient
    ) -> None:
        db = db_of(client)
        _, victim_pk, email = _user(client)
        who = browser(client)
        who.cookies.set("oi_session", "chosen-by-an-attacker-0123456789", path="/dashboard")
        done = sign_in(who, email, PASSWORD)
        cookie = set_cookie(done, "oi_session")
        assert cookie is not None and cookie["value"] != "chosen-by-an-attacker-0123456789"
        assert session_row(db, "chosen-by-an-attacker-0123456789") is None
        stored = session_row(db, cookie["value"])
        assert stored is not None and stored.user_id == victim_pk

    def test_signing_in_over_someone_elses_session_starts_a_new_one(
        self, client: TestClient
    ) -> None:
        db = db_of(client)
        attacker = signed_in(client)
        _, victim_pk, email = _user(client)
        planted = attacker.cookie
        # The victim's browser carries the attacker's session (and so its CSRF token).
        done = attacker.client.post(
            "/dashboard/login",
            data={"csrf_token": attacker.csrf(), "email": email, "password": PASSWORD},
        )
        assert done.status_code == 303
        cookie = set_cookie(done, "oi_session")
        assert cookie is not None and cookie["value"] != planted
        new, old = session_row(db, cookie["value"]), session_row(db, planted)
        assert new is not None and new.user_id == victim_pk
        assert old is not None and old.user_id == attacker.user_pk

    def test_every_sign_in_is_a_new_session_with_its_own_csrf_token(
        self, client: TestClient
    ) -> None:
        first = signed_in(client)
        second = again(first)
        assert first.cookie != second.cookie
        assert first.csrf() != second.csrf()


class TestSignOut:
    def test_signing_out_ends_the_session_on_the_server(self, client: TestClient) -> None:
        db = db_of(client)
        dashboard = signed_in(client)
        old = dashboard.cookie
        done = dashboard.post("/dashboard/logout")
        assert (done.status_code, done.headers["location"]) == (
            303,
            "/dashboard/login?signed_out=1",
        )
        cleared = set_cookie(done, "oi_session")
        assert cleared is not None and cleared["max-age"] == "0"
        stored = session_row(db, old)
        assert stored is not None and stored.revoked_ms is not None
        # The old cookie, kept by someone, no longer opens anything.
        replay = browser(client).get("/dashboard", headers={"cookie": f"oi_session={old}"})
        assert _signed_out(replay)
        notice = browser(client).get(done.headers["location"])
        assert "You have signed out." in visible_text(notice.text)

    def test_an_htmx_sign_out_redirects_the_whole_page(self, client: TestClient) -> None:
        dashboard = signed_in(client)
        done = dashboard.post("/dashboard/logout", headers={"HX-Request": "true"})
        assert done.status_code == 204
        assert done.headers["HX-Redirect"] == "/dashboard/login?signed_out=1"
        assert _signed_out(dashboard.get("/dashboard"))


class TestExpiry:
    @pytest.fixture
    def settings(self, database: TestDatabase) -> Settings:
        return database.settings(session_idle_minutes=5, session_max_hours=1)

    def test_the_cookie_and_the_session_last_the_absolute_limit(self, client: TestClient) -> None:
        _, _, email = _user(client)
        done = sign_in(browser(client), email, PASSWORD)
        cookie = set_cookie(done, "oi_session")
        assert cookie is not None and cookie["max-age"] == "3600"
        stored = session_row(db_of(client), cookie["value"])
        assert stored is not None and stored.expires_ms - stored.created_ms == 3_600_000

    def test_a_session_idle_for_too_long_ends(self, client: TestClient) -> None:
        db = db_of(client)
        dashboard = signed_in(client)
        cookie = dashboard.cookie
        almost = now_ms() - 5 * 60_000 + 30_000
        move_session(db, cookie, last_seen_ms=almost)
        assert dashboard.get("/dashboard").status_code == 200
        touched = session_row(db, cookie)
        assert touched is not None and touched.last_seen_ms > almost + 20_000  # in use again

        move_session(db, cookie, last_seen_ms=now_ms() - 5 * 60_000 - 1_000)
        ended = dashboard.get("/dashboard/impacts")
        assert ended.status_code == 303
        assert ended.headers["location"] == "/dashboard/login?next=/dashboard/impacts"
        cleared = set_cookie(ended, "oi_session")
        assert cleared is not None and cleared["max-age"] == "0"

    def test_a_session_in_use_ends_at_its_absolute_expiry(self, client: TestClient) -> None:
        db = db_of(client)
        dashboard = signed_in(client)
        move_session(db, dashboard.cookie, expires_ms=now_ms() + 60_000)
        assert dashboard.get("/dashboard").status_code == 200
        move_session(db, dashboard.cookie, expires_ms=now_ms() - 1, last_seen_ms=now_ms())
        assert _signed_out(dashboard.get("/dashboard"))


class TestPasswordChange:
    def test_a_new_password_ends_every_other_session(self, client: TestClient) -> None:
        db = db_of(client)
        here = signed_in(client)
        elsewhere = again(here)
        old_cookie = here.cookie
        done = here.post(
            "/dashboard/team/password",
            {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        )
        assert (done.status_code, done.headers["location"]) == (
            303,
            "/dashboard/team?password_changed=1",
        )
        assert here.cookie != old_cookie
        stored = session_row(db, old_cookie)
        assert stored is not None and stored.revoked_ms is not None
        here.forget_csrf()
        page = here.page("/dashboard/team", password_changed="1")
        assert "Password changed. Every other browser has been signed out." in visible_text(page)
        assert _signed_out(elsewhere.get("/dashboard"))
        assert sign_in(browser(client), here.email, PASSWORD).status_code == FORM_ERROR
        assert sign_in(browser(client), here.email, NEW_PASSWORD).status_code == 303

    @pytest.mark.parametrize(
        ("form", "name", "message"),
        [
            (
                {"current_password": "not my password", "new_password": NEW_PASSWORD},
                "current_password",
                "Is not your current password",
            ),
            (
                {"current_password": PASSWORD, "new_password": "short"},
                "new_password",
                "Must be at least 10 characters long",
            ),
        ],
    )
    def test_a_refused_change_says_why_next_to_the_field_and_changes_nothing(
        self, client: TestClient, form: dict[str, str], name: str, message: str
    ) -> None:
        here = signed_in(client)
        elsewhere = again(here)
        before = user_row(db_of(client), here.user_pk)
        refused = here.post("/dashboard/team/password", form)
        assert refused.status_code == FORM_ERROR
        assert field_error(refused.text, name) == message
        assert 'aria-invalid="true"' in form_field(refused.text, name)
        after = user_row(db_of(client), here.user_pk)
        assert before is not None and after is not None
        assert after.password_hash == before.password_hash
        assert elsewhere.get("/dashboard").status_code == 200


class TestThrottlePerEmail:
    @pytest.fixture
    def settings(self, database: TestDatabase) -> Settings:
        return database.settings(signin_rate_limit="10/15minutes")

    def test_the_eleventh_attempt_within_the_window_waits(self, client: TestClient) -> None:
        _, _, email = _user(client)
        _, _, other = _user(client)
        who = browser(client)
        for _ in range(10):
            assert sign_in(who, email, "wrong password!").status_code == FORM_ERROR
        # Even with the right password, and the address typed differently.
        held = sign_in(who, email.upper(), PASSWORD)
        assert held.status_code == 429
        wait = int(held.headers["Retry-After"])
        assert 0 < wait <= 15 * 60
        assert set_cookie(held, "oi_session") is None
        assert "Too many sign-in attempts. Try again in 15 minutes." in visible_text(held.text)
        assert sign_in(who, other, PASSWORD).status_code == 303


class TestThrottlePerAddress:
    @pytest.fixture
    def settings(self, database: TestDatabase) -> Settings:
        return database.settings(signin_rate_limit="2/15minutes")  # 10 per IP

    def test_one_address_gets_five_times_the_budget_of_an_email(self, client: TestClient) -> None:
        _, _, email = _user(client)
        who = browser(client)
        for _ in range(10):
            assert sign_in(who, unique_email("guess"), PASSWORD).status_code == FORM_ERROR
        held = sign_in(who, email, PASSWORD)
        assert held.status_code == 429
        assert 0 < int(held.headers["Retry-After"]) <= 15 * 60

    def test_reset_requests_are_throttled_with_the_same_answer(self, client: TestClient) -> None:
        db = db_of(client)
        _, user_pk, email = _user(client)
        who, token = anonymous(client)
        answers = [
            who.post("/dashboard/forgot", data={"csrf_token": token, "email": email})
            for _ in range(3)
        ]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert len({a.text for a in answers}) == 1
        issued = db.run_sync(
            lambda s: s.scalar(
                select(func.count())
                .select_from(UserToken)
                .where(UserToken.user_id == user_pk, UserToken.purpose == "reset")
            )
        )
        assert issued == 2


# CSRF ------------------------------------------------------------------------------------


@dataclass
class World:
    """One account with something for every state-changing route to act on."""

    owner: Dashboard
    member_pk: int
    member_email: str
    invitation: str
    reset: str
    tracking_id: str
    key_prefix: str


def _world(client: TestClient) -> World:
    db = db_of(client)
    owner = signed_in(client)
    member_pk, member_email = add_user(db, owner.account, role="member")
    _, _, invitation = invite_user(db, owner.account)
    (tracking_id,) = record(db, owner.account, [Planned(amount=3)])
    prefix = next(p for p in key_prefixes(db, owner.account) if p.startswith("oi_test_"))
    return World(
        owner,
        member_pk,
        member_email,
        invitation,
        reset_token(db, member_email),
        tracking_id,
        prefix,
    )


# What a real submission of each route looks like: (path, form, made by a
# signed-out browser). A route missing here is still checked for refusals.
Real = Callable[[World], tuple[str, dict[str, str], bool]]
REAL: dict[str, Real] = {
    "/dashboard/login": lambda w: (
        "/dashboard/login",
        {"email": w.member_email, "password": PASSWORD},
        True,
    ),
    "/dashboard/logout": lambda w: ("/dashboard/logout", {}, False),
    "/dashboard/forgot": lambda w: ("/dashboard/forgot", {"email": w.owner.email}, True),
    "/dashboard/invite/{token}": lambda w: (
        f"/dashboard/invite/{w.invitation}",
        {"password": NEW_PASSWORD},
        True,
    ),
    "/dashboard/reset/{token}": lambda w: (
        f"/dashboard/reset/{w.reset}",
        {"password": NEW_PASSWORD},
        True,
    ),
    "/dashboard/env": lambda w: ("/dashboard/env", {"env": "sandbox"}, False),
    "/dashboard/impacts/{tracking_id}/cancel": lambda w: (
        f"/dashboard/impacts/{w.tracking_id}/cancel",
        {"reason": "refund"},
        False,
    ),
    "/dashboard/developers/keys": lambda w: (
        "/dashboard/developers/keys",
        {"env": "sandbox"},
        False,
    ),
    "/dashboard/developers/keys/{prefix}/revoke": lambda w: (
        f"/dashboard/developers/keys/{w.key_prefix}/revoke",
        {},
        False,
    ),
    "/dashboard/team/invite": lambda w: (
        "/dashboard/team/invite",
        {"email": unique_email("new"), "role": "member"},
        False,
    ),
    "/dashboard/team/{user_pk}/remove": lambda w: (
        f"/dashboard/team/{w.member_pk}/remove",
        {},
        False,
    ),
    "/dashboard/team/password": lambda w: (
        "/dashboard/team/password",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        False,
    ),
}


def unsafe_dashboard_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route under /dashboard that is not GET/HEAD/OPTIONS,
    however the app nests its routers."""
    contexts = getattr(routing, "iter_route_contexts", None)
    routes = list(contexts(app.routes)) if contexts else list(app.routes)
    found = set()
    for route in routes:
        path = getattr(route, "path", "")
        if path != "/dashboard" and not path.startswith("/dashboard/"):
            continue
        for method in getattr(route, "methods", None) or ():
            if method not in ("GET", "HEAD", "OPTIONS"):
                found.add((method, path))
    return sorted(found)


def _state(db: Database, account: AccountKeys) -> dict[str, Any]:
    """Everything of the account a dashboard request could change."""

    def load(session: Session) -> dict[str, Any]:
        account_id = session.scalar(select(Account.id).where(Account.user_id == account.user_id))
        people = list(session.scalars(select(User).where(User.account_id == account_id)))
        ids = [u.id for u in people]
        return {
            "users": sorted((u.id, u.email, u.role, u.password_hash) for u in people),
            "sessions": sorted(
                (s.id, s.revoked_ms, s.env)
                for s in session.scalars(select(UserSession).where(UserSession.user_id.in_(ids)))
            ),
            "tokens": sorted(
                (t.id, t.used_ms)
                for t in session.scalars(select(UserToken).where(UserToken.user_id.in_(ids)))
            ),
            "keys": sorted(
                (k.prefix, k.revoked_ms)
                for k in session.scalars(select(ApiKey).where(ApiKey.account_id == account_id))
            ),
            "impacts": sorted(
                (i.time_ms, i.cancelled_ms, i.stage)
                for i in session.scalars(select(Impact).where(Impact.account_id == account_id))
            ),
            "outbox": session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.account_id == account_id)
            ),
        }

    return db.run_sync(load)


class TestCsrf:
    def test_every_state_changing_route_refuses_a_missing_or_wrong_token(
        self, client: TestClient
    ) -> None:
        db = db_of(client)
        routes = unsafe_dashboard_routes(client.app)
        assert {path for _, path in routes} >= set(REAL), "route enumeration missed routes"
        for method, template in routes:
            w = _world(client)
            if template in REAL:
                path, form, by_anonymous = REAL[template](w)
            else:  # a route added since: any value reaches the guard first
                path, form, by_anonymous = template.replace("{", "").replace("}", ""), {}, False
            signed_out, form_token = anonymous(client)
            # A signed-in browser may still hold a signed-out page's token cookie.
            w.owner.client.cookies.set("oi_csrf", form_token, path="/dashboard")
            _, someone_elses = anonymous(client)
            attempts = [
                ("signed in, no token", w.owner.client, None, {}),
                ("signed in, wrong token", w.owner.client, "x" * 43, {}),
                ("signed in, a signed-out form's token", w.owner.client, form_token, {}),
                ("signed in, wrong header", w.owner.client, None, {"X-CSRF-Token": "x" * 43}),
                ("signed out, no token", signed_out, None, {}),
                ("signed out, wrong token", signed_out, "y" * 32, {}),
                ("signed out, another browser's token", signed_out, someone_elses, {}),
                ("signed out, a session's token", signed_out, w.owner.csrf(), {}),
            ]
            before = _state(db, w.owner.account)
            for label, who, token, headers in attempts:
                data = {**form, **({"csrf_token": token} if token else {})}
                refused = who.request(method, path, data=data, headers=headers)
                where = f"{method} {template}, {label}"
                assert refused.status_code == 403, (where, refused.status_code)
                assert FORBIDDEN in visible_text(refused.text), where
                assert _state(db, w.owner.account) == before, where

            if template in REAL:  # the same request with its token goes through
                who, token = (
                    (signed_out, form_token) if by_anonymous else (w.owner.client, w.owner.csrf())
                )
                done = who.request(method, path, data={**form, "csrf_token": token})
                assert done.status_code in (200, 204, 303), (template, done.status_code)
                assert _state(db, w.owner.account) != before, template

    def test_the_header_carries_the_token_for_htmx_and_takes_precedence(
        self, client: TestClient
    ) -> None:
        dashboard = signed_in(client)
        token = dashboard.csrf()
        wrong_header = dashboard.client.post(
            "/dashboard/env",
            data={"env": "sandbox", "csrf_token": token},
            headers={"X-CSRF-Token": "not-the-token"},
        )
        assert wrong_header.status_code == 403
        done = dashboard.client.post(
            "/dashboard/env",
            data={"env": "sandbox", "next": "/dashboard/impacts"},
            headers={"X-CSRF-Token": token, "HX-Request": "true"},
        )
        assert (done.status_code, done.headers["HX-Redirect"]) == (204, "/dashboard/impacts")
        assert "Sandbox" in visible_text(dashboard.page("/dashboard/impacts"))

    def test_a_token_in_a_body_that_is_not_a_form_is_not_read(self, client: TestClient) -> None:
        dashboard = signed_in(client)
        token = dashboard.csrf()
        as_json = dashboard.client.post("/dashboard/env", json={"csrf_token": token, "env": "x"})
        as_text = dashboard.client.post(
            "/dashboard/env",
            content=f"csrf_token={token}&env=sandbox",
            headers={"content-type": "text/plain"},
        )
        assert (as_json.status_code, as_text.status_code) == (403, 403)
        row = session_row(db_of(client), dashboard.cookie)
        assert row is not None and row.env == "production"


# One-time links --------------------------------------------------------------------------


def _open(client: TestClient, path: str) -> tuple[TestClient, Any]:
    who = browser(client)
    return who, who.get(path)


def _submit(who: TestClient, page: Any, path: str, password: str) -> Any:
    return who.post(path, data={"csrf_token": csrf_token(page), "password": password})


class TestInvitationLinks:
    def test_the_page_asks_for_a_password_with_a_labelled_field(self, client: TestClient) -> None:
        account = make_account(db_of(client))
        _, email, token = invite_user(db_of(client), account)
        _, page = _open(client, f"/dashboard/invite/{token}")
        assert page.status_code == 200
        assert '<label for="password">Password</label>' in page.text
        password_field = form_field(page.text, "password")
        assert '<input id="password" name="password" type="password"' in password_field
        assert 'type="submit"' in button(page.text, "Set password")
        assert email in visible_text(page.text)

    def test_the_link_sets_the_password_signs_in_and_works_once(self, client: TestClient) -> None:
        db = db_of(client)
        account = make_account(db)
        user_pk, email, token = invite_user(db, account, role="owner")
        path = f"/dashboard/invite/{token}"
        who, page = _open(client, path)
        done = _submit(who, page, path, PASSWORD)
        assert (done.status_code, done.headers["location"]) == (303, "/dashboard")
        assert who.get("/dashboard").status_code == 200
        user = user_row(db, user_pk)
        assert user is not None and user.password_hash is not None

        _, again_page = _open(client, path)
        assert again_page.status_code == 404
        assert "This link has expired or has already been used" in visible_text(again_page.text)
        assert "Ask an owner of the account to invite you again." in visible_text(again_page.text)
        other, token_of_other = anonymous(client)
        replay = other.post(path, data={"csrf_token": token_of_other, "password": NEW_PASSWORD})
        assert replay.status_code == 404
        assert sign_in(browser(client), email, PASSWORD).status_code == 303
        assert sign_in(browser(client), email, NEW_PASSWORD).status_code == FORM_ERROR

    def test_an_invitation_expires(self, client: TestClient) -> None:
        db = db_of(client)
        account = make_account(db)
        user_pk, _, token = invite_user(db, account)
        path = f"/dashboard/invite/{token}"
        who, page = _open(client, path)
        move_token(db, token, expires_ms=now_ms())
        assert _submit(who, page, path, PASSWORD).status_code == 404
        assert browser(client).get(path).status_code == 404
        user = user_row(db, user_pk)
        assert user is not None and user.password_hash is None

    def test_a_short_password_is_refused_next_to_the_field_and_changes_nothing(
        self, client: TestClient
    ) -> None:
        db = db_of(client)
        account = make_account(db)
        user_pk, _, token = invite_user(db, account)
        path = f"/dashboard/invite/{token}"
        who, page = _open(client, path)
        refused = _submit(who, page, path, "short")
        assert refused.status_code == FORM_ERROR
        assert field_error(refused.text, "password") == "Must be at least 10 characters long"
        assert 'aria-describedby="password-hint password-error"' in form_field(
            refused.text, "password"
        )
        assert '<a href="#password">Must be at least 10 characters long</a>' in refused.text
        assert set_cookie(refused, "oi_session") is None
        row, user = token_row(db, token), user_row(db, user_pk)
        assert row is not None and row.used_ms is None
        assert user is not None and user.password_hash is None
        assert _submit(who, refused, path, PASSWORD).status_code == 303

    def test_an_unknown_link_gets_the_same_page_as_a_used_one(self, client: TestClient) -> None:
        db = db_of(client)
        account = make_account(db)
        _, _, token = invite_user(db, account)
        path = f"/dashboard/invite/{token}"
        who, page = _open(client, path)
        assert _submit(who, page, path, PASSWORD).status_code == 303
        viewer = browser(client)
        used = viewer.get(path)
        unknown = viewer.get("/dashboard/invite/" + "A" * 43)
        assert used.status_code == unknown.status_code == 404
        assert used.text == unknown.text


class TestResetLinks:
    def test_forgot_answers_the_same_for_known_and_unknown_addresses(
        self, client: TestClient
    ) -> None:
        db = db_of(client)
        _, user_pk, email = _user(client)
        who, token = anonymous(client)
        unknown = unique_email("nobody")
        known_page = who.post("/dashboard/forgot", data={"csrf_token": token, "email": email})
        unknown_page = who.post("/dashboard/forgot", data={"csrf_token": token, "email": unknown})
        assert known_page.status_code == unknown_page.status_code == 200
        assert known_page.text.replace(email, "EMAIL") == unknown_page.text.replace(
            unknown, "EMAIL"
        )
        assert f"If {email} belongs to a dashboard user, we have emailed a link" in visible_text(
            known_page.text
        )
        issued = db.run_sync(
            lambda s: s.scalar(
                select(func.count()).select_from(UserToken).where(UserToken.user_id == user_pk)
            )
        )
        assert issued == 1

    def test_a_malformed_address_is_refused_next_to_the_field(self, client: TestClient) -> None:
        who, token = anonymous(client)
        refused = who.post("/dashboard/forgot", data={"csrf_token": token, "email": "nope"})
        assert refused.status_code == FORM_ERROR
        assert field_error(refused.text, "email") == "Enter an email address like name@example.com"

    def test_a_reset_link_works_once_and_signs_out_every_browser(self, client: TestClient) -> None:
        db = db_of(client)
        dashboard = signed_in(client)
        token = reset_token(db, dashboard.email)
        path = f"/dashboard/reset/{token}"
        who, page = _open(client, path)
        assert page.status_code == 200
        assert "Set a new password for" in visible_text(page.text)
        assert '<label for="password">Password</label>' in page.text
        done = _submit(who, page, path, NEW_PASSWORD)
        assert (done.status_code, done.headers["location"]) == (303, "/dashboard")
        assert who.get("/dashboard").status_code == 200
        assert _signed_out(dashboard.get("/dashboard"))
        other, token_of_other = anonymous(client)
        replay = other.post(
            path, data={"csrf_token": token_of_other, "password": "yet another one!"}
        )
        assert replay.status_code == 404
        assert sign_in(browser(client), dashboard.email, PASSWORD).status_code == FORM_ERROR
        assert sign_in(browser(client), dashboard.email, NEW_PASSWORD).status_code == 303

    def test_a_reset_link_expires(self, client: TestClient) -> None:
        db = db_of(client)
        _, _, email = _user(client)
        token = reset_token(db, email)
        move_token(db, token, expires_ms=now_ms() - 1)
        _, page = _open(client, f"/dashboard/reset/{token}")
        assert page.status_code == 404
        assert "Reset links work once, for one hour." in visible_text(page.text)


class TestEmailsWithSmtp:
    @pytest.fixture
    def settings(self, database: TestDatabase) -> Settings:
        return database.settings(smtp_url="smtp://mail.example.test:2525")

    def test_an_invitation_from_the_team_page_is_queued_with_the_link_shown(
        self, client: TestClient
    ) -> None:
        owner = signed_in(client, name="Mailing Shop")
        email = unique_email("colleague")
        page = owner.post("/dashboard/team/invite", {"email": email, "role": "member"})
        assert page.status_code == 200
        text = visible_text(page.text)
        assert f"{email} is invited as member. We have emailed the link." in text
        shown = text.split("The link works once, for seven days: ", 1)[1].split(" ")[0]
        assert outbox_payloads(db_of(client), owner.account, "user_invite") == [
            {
                "template": "user_invite",
                "to": email,
                "account_name": "Mailing Shop",
                "role": "member",
                "url": shown,
            }
        ]

    def test_a_reset_request_is_queued_only_for_a_user(self, client: TestClient) -> None:
        db = db_of(client)
        account, _, email = _user(client)
        who, token = anonymous(client)
        unknown = unique_email("nobody")
        for address in (email, unknown):
            sent = who.post("/dashboard/forgot", data={"csrf_token": token, "email": address})
            assert sent.status_code == 200
        (payload,) = outbox_payloads(db, account, "user_reset")
        assert payload["to"] == email
        assert payload["url"].startswith("http://testserver/dashboard/reset/")
        to_unknown = db.run_sync(
            lambda s: [
                m.payload
                for m in s.scalars(select(OutboxMessage))
                if m.payload.get("to") == unknown
            ]
        )
        assert to_unknown == []
        path = payload["url"].removeprefix("http://testserver")
        link_who, page = _open(client, path)
        assert _submit(link_who, page, path, NEW_PASSWORD).status_code == 303


class TestNoEmailsWithoutSmtp:
    def test_nothing_is_queued_and_the_invitation_link_is_shown(self, client: TestClient) -> None:
        owner = signed_in(client)
        email = unique_email("colleague")
        page = owner.post("/dashboard/team/invite", {"email": email, "role": "owner"})
        assert page.status_code == 200
        text = visible_text(page.text)
        assert f"{email} is invited as owner. The link works once" in text
        assert "We have emailed" not in text
        who, token = anonymous(client)
        who.post("/dashboard/forgot", data={"csrf_token": token, "email": owner.email})
        db = db_of(client)
        assert outbox_payloads(db, owner.account, "user_invite") == []
        assert outbox_payloads(db, owner.account, "user_reset") == []
