"""Sessions and sign-in, where tests/dashboard/test_auth.py leaves off.

test_auth.py already checks session fixation, sign-out, expiry, password
changes and resets ending sessions, throttling, CSRF on the routes it knows
with their own tables, one-time links and the same answer for a wrong email
and a wrong password. Here:

- CSRF on every state-changing dashboard route, enumerated from app.routes,
  each sent with the real ids of an account (tests/test_authorization_matrix.py)
  and checked against every table the account has rows in;
- a session that has ended, however it ended, changes nothing even with its
  own CSRF token;
- a password change voids a reset link still out; an expired link sets no
  password when its form is sent;
- the throttle answers the same for a known and an unknown address, holds an
  address whatever browser tries it, and holds a browser whatever address it
  sprays reset requests at;
- sign-in and reset answers are the same, headers and all, with SMTP set up;
- no dashboard answer that is a page (signed in or not, errors and the
  answers to forms included) may be framed.

Each test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from openimpact.accounts.models import Account
from openimpact.config import Settings
from openimpact.timeutil import now_ms
from openimpact.users.models import UserToken
from tests.conftest import TestDatabase
from tests.dashboard.helpers import (
    FORM_ERROR,
    NEW_PASSWORD,
    PASSWORD,
    Dashboard,
    add_user,
    again,
    anonymous,
    browser,
    csrf_token,
    db_of,
    invite_user,
    move_session,
    move_token,
    reset_token,
    session_row,
    set_cookie,
    sign_in,
    signed_in,
    unique_email,
    user_row,
    visible_text,
)
from tests.test_authorization_matrix import (
    HOOK_URL,
    MEMBER,
    OWNER,
    PUBLIC,
    ROUTES,
    RULES,
    Call,
    Route,
    app_routes,
    as_owner,
    build_world,
    changed,
    request_of,
    send_form,
    snapshot,
)

FORBIDDEN = "This form has expired or did not come from this site"


@pytest.fixture
def settings(database: TestDatabase) -> Settings:
    # The account's webhook endpoint sends to 127.0.0.1 (a closed port).
    return database.settings(webhooks_allow_private=True)


def _dashboard(path: str) -> bool:
    return path == "/dashboard" or path.startswith("/dashboard/")


def _id(route: Route) -> str:
    return f"{route[0]} {route[1]}"


def state_changing(routes: list[Route]) -> list[Route]:
    return [r for r in routes if _dashboard(r[1]) and r[0] not in ("GET", "HEAD", "OPTIONS", "*")]


UNSAFE = state_changing(ROUTES)


# Reading answers -------------------------------------------------------------------------

_VARYING = {"date", "content-length"}
_TOKEN = re.compile(r'(?<=name="csrf_token" value=")[^"]*')


def _same_answers(answers: dict[str, Response]) -> None:
    """Status, headers (but for the date and the length) and page are the same,
    but for the address typed, which the page repeats, and each browser's own
    form token."""
    seen = set()
    for typed, response in answers.items():
        headers = tuple(
            sorted((k, v) for k, v in response.headers.multi_items() if k not in _VARYING)
        )
        text = _TOKEN.sub("TOKEN", response.text.replace(typed, "EMAIL"))
        seen.add((response.status_code, headers, text))
    assert len(seen) == 1, [a[:2] for a in seen]


# CSRF ------------------------------------------------------------------------------------


def test_the_routes_checked_are_the_apps(client: TestClient) -> None:
    assert state_changing(app_routes(client.app)) == UNSAFE
    assert ("POST", "/dashboard/logout") in UNSAFE and len(UNSAFE) >= 25


@pytest.mark.parametrize("route", UNSAFE, ids=_id)
def test_without_the_right_csrf_token_a_route_refuses_and_changes_nothing(
    client: TestClient, route: Route
) -> None:
    method = route[0]
    w = build_world(client)
    db = db_of(client)
    known = route in RULES
    # A route added since: any path reaches the guard, which runs first.
    call = request_of(route, w) if known else Call(route[1].replace("{", "").replace("}", ""))
    signed_out, _ = anonymous(client)
    attempts = [
        ("signed in, no token", w.owner.client, None),
        ("signed in, a wrong token", w.owner.client, "x" * 43),
        ("signed in, another session's token", w.owner.client, w.stranger.csrf()),
        ("signed out, no token", signed_out, None),
        ("signed out, a wrong token", signed_out, "y" * 32),
    ]
    before = snapshot(db, w.account_pk)
    for label, who, token in attempts:
        refused = send_form(who, method, call, token)
        where = f"{_id(route)}, {label}"
        assert refused.status_code == 403, (where, refused.status_code)
        assert FORBIDDEN in visible_text(refused.text), where
        after = snapshot(db, w.account_pk)
        assert after == before, f"{where}: changed {changed(before, after)}"

    assert known, f"{_id(route)}: classify it in tests/test_authorization_matrix.py RULES"
    # The same request with its token goes through (for a form of a signed-out
    # page, the token of that page).
    rule = RULES[route]
    done = as_owner(route, w, call)
    assert done.status_code == rule.ok, (_id(route), done.status_code, done.text[:500])
    if rule.changes:
        assert snapshot(db, w.account_pk) != before, _id(route)


# Ended sessions --------------------------------------------------------------------------


def _sign_out(client: TestClient, d: Dashboard) -> None:
    assert d.post("/dashboard/logout").status_code == 303


def _idle(client: TestClient, d: Dashboard) -> None:
    idle_ms = client.app.state.settings.session_idle_minutes * 60_000  # type: ignore[attr-defined]
    move_session(db_of(client), d.cookie, last_seen_ms=now_ms() - idle_ms - 1_000)


def _past_max_age(client: TestClient, d: Dashboard) -> None:
    move_session(db_of(client), d.cookie, expires_ms=now_ms() - 1, last_seen_ms=now_ms())


def _password_changed_elsewhere(client: TestClient, d: Dashboard) -> None:
    form = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert again(d).post("/dashboard/team/password", form).status_code == 303


def _password_reset(client: TestClient, d: Dashboard) -> None:
    path = f"/dashboard/reset/{reset_token(db_of(client), d.email)}"
    who = browser(client)
    page = who.get(path)
    done = who.post(path, data={"csrf_token": csrf_token(page), "password": NEW_PASSWORD})
    assert done.status_code == 303


def _removed(client: TestClient, d: Dashboard) -> None:
    other = signed_in(client, d.account)
    assert other.post(f"/dashboard/team/{d.user_pk}/remove").status_code == 303


ENDINGS: dict[str, Callable[[TestClient, Dashboard], None]] = {
    "signed out": _sign_out,
    "idle for too long": _idle,
    "past its absolute age": _past_max_age,
    "the password changed in another browser": _password_changed_elsewhere,
    "the password reset with a link": _password_reset,
    "the user removed by another owner": _removed,
}


REVOKING = (
    "signed out",
    "the password changed in another browser",
    "the password reset with a link",
)


def _account_pk(client: TestClient, d: Dashboard) -> int:
    return db_of(client).run_sync(
        lambda s: s.scalar(select(Account.id).where(Account.user_id == d.account.user_id))
    )


@pytest.mark.parametrize("ending", ENDINGS)
def test_an_ended_session_changes_nothing_even_with_its_own_token(
    client: TestClient, ending: str
) -> None:
    db = db_of(client)
    owner = signed_in(client)
    cookie, token = owner.cookie, owner.csrf()
    ENDINGS[ending](client, owner)
    account_pk = _account_pk(client, owner)
    before = snapshot(db, account_pk)

    # Someone who kept the cookie and a page of the session replays them.
    replay = browser(client)
    replay.cookies.set("oi_session", cookie, path="/dashboard")
    for path, form in (
        ("/dashboard/developers/keys", {"env": "sandbox"}),
        ("/dashboard/team/invite", {"email": unique_email("backdoor"), "role": "owner"}),
        ("/dashboard/env", {"env": "sandbox"}),
    ):
        refused = replay.post(path, data={**form, "csrf_token": token})
        assert refused.status_code == 403, (path, refused.status_code)
        assert FORBIDDEN in visible_text(refused.text)
    page = replay.get("/dashboard/developers")
    assert page.status_code == 303 and page.headers["location"].startswith("/dashboard/login")
    after = snapshot(db, account_pk)
    assert after == before, changed(before, after)
    stored = session_row(db, cookie)
    if ending == "the user removed by another owner":
        assert stored is None  # gone with the user
    elif ending in REVOKING:
        assert stored is not None and stored.revoked_ms is not None, ending


# One-time links --------------------------------------------------------------------------


def _link_form(client: TestClient, path: str) -> tuple[TestClient, Response]:
    who = browser(client)
    return who, who.get(path)


class TestResetLinks:
    def test_a_password_change_voids_a_reset_link_still_out(self, client: TestClient) -> None:
        """Someone who got hold of the link (a shared mailbox, a forwarded
        email) loses it when the person changes the password themselves."""
        db = db_of(client)
        owner = signed_in(client)
        token = reset_token(db, owner.email)
        path = f"/dashboard/reset/{token}"
        who, page = _link_form(client, path)
        assert page.status_code == 200
        changed_ = owner.post(
            "/dashboard/team/password",
            {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        )
        assert changed_.status_code == 303
        used = who.post(path, data={"csrf_token": csrf_token(page), "password": "taken over!!"})
        assert used.status_code == 404
        assert "This link has expired or has already been used" in visible_text(used.text)
        assert set_cookie(used, "oi_session") is None
        assert browser(client).get(path).status_code == 404
        assert sign_in(browser(client), owner.email, "taken over!!").status_code == FORM_ERROR
        assert sign_in(browser(client), owner.email, NEW_PASSWORD).status_code == 303

    def test_an_expired_link_sets_no_password_when_its_form_is_sent(
        self, client: TestClient
    ) -> None:
        db = db_of(client)
        owner = signed_in(client)
        token = reset_token(db, owner.email)
        path = f"/dashboard/reset/{token}"
        who, page = _link_form(client, path)
        assert page.status_code == 200
        before = user_row(db, owner.user_pk)
        move_token(db, token, expires_ms=now_ms() - 1)
        late = who.post(path, data={"csrf_token": csrf_token(page), "password": NEW_PASSWORD})
        assert late.status_code == 404
        assert "Reset links work once, for one hour." in visible_text(late.text)
        assert set_cookie(late, "oi_session") is None
        after = user_row(db, owner.user_pk)
        assert before is not None and after is not None
        assert after.password_hash == before.password_hash
        assert owner.get("/dashboard").status_code == 200  # nobody was signed out either


# Throttling ------------------------------------------------------------------------------


class TestThrottle:
    @pytest.fixture
    def settings(self, database: TestDatabase) -> Settings:
        return database.settings(signin_rate_limit="2/15minutes")  # 10 per IP

    def test_a_throttled_sign_in_says_the_same_for_a_known_and_an_unknown_address(
        self, client: TestClient
    ) -> None:
        _, email = add_user(db_of(client), signed_in(client).account, role="member")
        answers = {}
        for typed in (email, unique_email("nobody")):
            who = browser(client)
            for _ in range(2):
                assert sign_in(who, typed, "wrong password!").status_code == FORM_ERROR
            held = sign_in(who, typed, PASSWORD)
            assert held.status_code == 429, typed
            assert set_cookie(held, "oi_session") is None
            answers[typed] = held
        _same_answers(answers)

    def test_an_email_stays_held_whatever_browser_tries_it(self, client: TestClient) -> None:
        _, email = add_user(db_of(client), signed_in(client).account)
        for _ in range(2):
            assert sign_in(browser(client), email, "wrong password!").status_code == FORM_ERROR
        held = sign_in(browser(client), email.upper(), PASSWORD)
        assert held.status_code == 429
        assert 0 < int(held.headers["Retry-After"]) <= 15 * 60
        assert set_cookie(held, "oi_session") is None

    def test_guessing_the_current_password_on_the_team_page_is_held(
        self, client: TestClient
    ) -> None:
        """Whoever has a session (a browser left open) must not get an
        unthrottled oracle for the password, which outlives the session."""
        here = signed_in(client)  # one attempt of the email's budget of two
        elsewhere = again(here)  # and the second
        guess = here.post(
            "/dashboard/team/password",
            {"current_password": "a guess at it", "new_password": NEW_PASSWORD},
        )
        assert guess.status_code == 429
        assert "Too many attempts. Try again in 15 minutes." in visible_text(guess.text)
        assert 0 < int(guess.headers["Retry-After"]) <= 15 * 60
        before = user_row(db_of(client), here.user_pk)
        right = here.post(
            "/dashboard/team/password",
            {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        )
        assert right.status_code == 429
        after = user_row(db_of(client), here.user_pk)
        assert before is not None and after is not None
        assert after.password_hash == before.password_hash
        assert elsewhere.get("/dashboard").status_code == 200  # no session ended

    def test_a_browser_spraying_reset_requests_at_many_emails_is_held_with_the_same_answer(
        self, client: TestClient
    ) -> None:
        db = db_of(client)
        user_pk, email = add_user(db, signed_in(client).account)
        who, token = anonymous(client)
        for _ in range(10):  # the browser's budget (five emails' worth), each for another email
            sent = who.post(
                "/dashboard/forgot", data={"csrf_token": token, "email": unique_email()}
            )
            assert sent.status_code == 200
        held = who.post("/dashboard/forgot", data={"csrf_token": token, "email": email})
        assert held.status_code == 200
        assert f"If {email} belongs to a dashboard user, we have emailed a link" in visible_text(
            held.text
        )
        issued = db.run_sync(
            lambda s: s.scalar(
                select(func.count()).select_from(UserToken).where(UserToken.user_id == user_pk)
            )
        )
        assert issued == 0


# No enumeration --------------------------------------------------------------------------


class TestWithSmtp:
    @pytest.fixture
    def settings(self, database: TestDatabase) -> Settings:
        return database.settings(smtp_url="smtp://mail.example.test:2525")

    def test_reset_requests_answer_the_same_headers_and_all(self, client: TestClient) -> None:
        db = db_of(client)
        owner = signed_in(client)
        _, invited, _ = invite_user(db, owner.account)
        answers = {}
        for typed in (owner.email, invited, unique_email("nobody")):
            who, token = anonymous(client)
            answers[typed] = who.post(
                "/dashboard/forgot", data={"csrf_token": token, "email": typed}
            )
        _same_answers(answers)
        assert answers[owner.email].status_code == 200

    def test_sign_in_answers_the_same_headers_and_all(self, client: TestClient) -> None:
        db = db_of(client)
        owner = signed_in(client)
        _, invited, _ = invite_user(db, owner.account)
        answers = {}
        for typed, password in (
            (owner.email, "not the password"),
            (owner.email.upper(), "not the password"),
            (invited, PASSWORD),
            (unique_email("nobody"), PASSWORD),
        ):
            answers[typed] = sign_in(browser(client), typed, password)
        _same_answers(answers)
        assert answers[owner.email].status_code == FORM_ERROR


# Framing ---------------------------------------------------------------------------------


def _directives(csp: str) -> dict[str, str]:
    found = {}
    for part in csp.split(";"):
        name, _, value = part.strip().partition(" ")
        if name:
            found[name.lower()] = value.strip()
    return found


def _not_framable(label: str, response: Response) -> None:
    assert response.headers.get("content-type", "").startswith("text/html"), label
    policy = _directives(response.headers.get("content-security-policy", ""))
    assert policy.get("frame-ancestors") == "'none'", (label, policy)
    assert response.headers.get("x-frame-options") == "DENY", label


def test_no_dashboard_page_can_be_framed(client: TestClient) -> None:
    """Clickjacking: every answer of the dashboard that is a page denies every
    framer, by CSP frame-ancestors and by X-Frame-Options for older browsers
    (the widget's counter page is the one page made to be framed:
    tests/public/test_counter.py)."""
    w = build_world(client)
    answers: list[tuple[str, Response]] = []
    for route in ROUTES:
        if route[0] != "GET" or not _dashboard(route[1]) or route[1].endswith(".csv"):
            continue
        assert route in RULES, f"{_id(route)}: classify it in tests/test_authorization_matrix.py"
        response = as_owner(route, w)
        assert response.status_code == 200, (_id(route), response.status_code)
        answers.append((_id(route), response))
    # The answers to forms that are pages of their own (a secret, a new key, a test...).
    for route in UNSAFE:
        rule = RULES.get(route)
        if rule is not None and rule.ok == 200 and rule.access in (MEMBER, OWNER, PUBLIC):
            answers.append((_id(route), as_owner(route, w)))
    # Error pages, signed in and out.
    hook = f"/dashboard/webhooks/{w.endpoint_id}"
    signed_out, token = anonymous(client)
    answers += [
        ("not found, signed in", w.owner.get("/dashboard/no-such-page")),
        ("not found, signed out", browser(client).get("/dashboard/no-such-page")),
        ("another account's thing", w.stranger.get(hook)),
        ("a member on an owner's action", w.member.post(hook + "/secret")),
        ("a bad parameter", w.owner.get("/dashboard/certificates", after="-5")),
        ("no CSRF token", w.owner.client.post("/dashboard/budget", data={"monthly": "5"})),
        ("an unknown link", browser(client).get("/dashboard/invite/" + "A" * 43)),
        ("a wrong password", sign_in(browser(client), w.owner.email, "wrong password!")),
        (
            "a form sent back with its errors",
            w.owner.post("/dashboard/webhooks", {"url": "ftp://" + HOOK_URL[7:]}),
        ),
        ("a signed-out form", signed_out.post("/dashboard/forgot", data={"csrf_token": token})),
    ]
    for label, response in answers:
        _not_framable(label, response)
    assert {r.status_code for _, r in answers} >= {200, 400, 403, 404}
