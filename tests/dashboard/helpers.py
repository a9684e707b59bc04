"""Plain factories for the dashboard's route tests: dashboard users, signed-in
browsers, impacts at chosen times, and small readers of the pages.

A "browser" is a TestClient of the test's app with its own cookie jar; it
never follows redirects, so that every 303 is seen. Pages are read as a person
reads them: by labels, buttons, links and visible text (tests/STYLE.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import html as html_lib
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import BigInteger, literal, select, update
from sqlalchemy.orm import Session

from openimpact.accounts.models import Account, ApiKey
from openimpact.app import create_app
from openimpact.auth import Caller
from openimpact.config import Settings
from openimpact.db import Database
from openimpact.impacts.models import Impact
from openimpact.impacts.service import NewImpact, record_impact
from openimpact.lifecycle.service import STEPS, advance, impact_by_tracking_id, new_batch_id
from openimpact.outbox.models import OutboxMessage
from openimpact.timeutil import ms_to_iso, now_ms
from openimpact.users import service as users
from openimpact.users.models import User, UserSession, UserToken
from tests.factories import AccountKeys, make_account

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a different long passphrase"
XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_SCRIPT = '"><script>alert(1)</script>'
# A form sent back with its messages (a wrong password, a bad date, a short
# password) is an answer of its own: dashboard/router.py::render answers 200,
# because htmx swaps only 2xx answers.
FORM_ERROR = 200


def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id at its smallest cost: a real hash takes ~0.1 s, and these tests
    make hundreds. tests/users/test_service.py checks the real parameters."""
    fast = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(users, "_hasher", fast)
    monkeypatch.setattr(users, "_DUMMY_HASH", fast.hash("not anyone's password"))


def db_of(client: TestClient) -> Database:
    return client.app.state.db  # type: ignore[attr-defined, no-any-return]


_addresses = itertools.count(1)


def browser(client: TestClient, base_url: str = "http://testserver") -> TestClient:
    """Another browser on the same server: its own cookies and its own client
    address (sign-in throttling counts per address), no redirects followed."""
    n = next(_addresses)
    return TestClient(
        client.app,
        base_url=base_url,
        follow_redirects=False,
        client=(f"10.{n // 62500 % 250}.{n // 250 % 250}.{n % 250 + 1}", 50000),
    )


class Apps:
    """Running apps shared by the tests of one module, one per backend and
    settings. FastAPI builds an app's routes on its first request (~0.15 s),
    which a fresh app per test would pay hundreds of times. Tests stay
    isolated as conftest.py intends: each makes its own accounts, users and
    browsers (each browser with its own address, for the sign-in throttle)."""

    def __init__(self) -> None:
        self._running: dict[str, TestClient] = {}
        self._stack = contextlib.ExitStack()

    def client(self, settings: Settings) -> TestClient:
        key = settings.model_dump_json()
        if key not in self._running:
            self._running[key] = self._stack.enter_context(TestClient(create_app(settings)))
        return self._running[key]

    def close(self) -> None:
        self._stack.close()


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _account(session: Session, user_id: str) -> Account:
    account = session.scalar(select(Account).where(Account.user_id == user_id))
    assert account is not None
    return account


# Users ----------------------------------------------------------------------------------


def unique_email(prefix: str = "person") -> str:
    import secrets

    return f"{prefix}-{secrets.token_hex(5)}@example.com"


def add_user(
    db: Database,
    account: AccountKeys,
    *,
    email: str | None = None,
    role: str = "owner",
    password: str = PASSWORD,
) -> tuple[int, str]:
    """A dashboard user who can sign in at once: (primary key, email)."""
    email = email or unique_email(role)

    def create(session: Session) -> int:
        return users.add_user(session, _account(session, account.user_id), email, role, password).id

    return db.run_sync(create, write=True), email


def invite_user(
    db: Database, account: AccountKeys, *, email: str | None = None, role: str = "member"
) -> tuple[int, str, str]:
    """An invited user (no password yet): (primary key, email, invitation token)."""
    email = email or unique_email("invited")

    def create(session: Session) -> tuple[int, str, str]:
        invitation = users.invite(session, _account(session, account.user_id), email, role)
        return invitation.user.id, invitation.user.email, invitation.token

    return db.run_sync(create, write=True)


def reset_token(db: Database, email: str) -> str:
    def issue(session: Session) -> str:
        found = users.request_reset(session, email)
        assert found is not None
        return found[1]

    return db.run_sync(issue, write=True)


def user_row(db: Database, user_pk: int) -> User | None:
    return db.run_sync(lambda s: s.get(User, user_pk))


def sessions_of(db: Database, user_pk: int) -> list[UserSession]:
    return db.run_sync(
        lambda s: list(
            s.scalars(
                select(UserSession).where(UserSession.user_id == user_pk).order_by(UserSession.id)
            )
        )
    )


def session_row(db: Database, cookie: str) -> UserSession | None:
    return db.run_sync(
        lambda s: s.scalar(select(UserSession).where(UserSession.token_hash == digest(cookie)))
    )


def move_session(db: Database, cookie: str, **values: int) -> None:
    """Rewrite the clock columns of a session (its past), instead of waiting."""
    db.run_sync(
        lambda s: s.execute(
            update(UserSession).where(UserSession.token_hash == digest(cookie)).values(**values)
        ),
        write=True,
    )


def token_row(db: Database, token: str) -> UserToken | None:
    return db.run_sync(
        lambda s: s.scalar(select(UserToken).where(UserToken.token_hash == digest(token)))
    )


def move_token(db: Database, token: str, **values: int) -> None:
    db.run_sync(
        lambda s: s.execute(
            update(UserToken).where(UserToken.token_hash == digest(token)).values(**values)
        ),
        write=True,
    )


def outbox_payloads(db: Database, account: AccountKeys, template: str) -> list[dict[str, Any]]:
    def load(session: Session) -> list[dict[str, Any]]:
        account_id = _account(session, account.user_id).id
        rows = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.account_id == account_id)
            .order_by(OutboxMessage.id)
        )
        return [row.payload for row in rows if row.payload.get("template") == template]

    return db.run_sync(load)


# Browsers -------------------------------------------------------------------------------

_CSRF = re.compile(r'<input type="hidden" name="csrf_token" value="([^"]*)">')


def csrf_token(page: str | Response) -> str:
    """The value of the page's ``csrf_token`` hidden input (every form has the same)."""
    text = page if isinstance(page, str) else page.text
    found = set(_CSRF.findall(text))
    assert len(found) == 1, f"expected one csrf token on the page, found {found}"
    return found.pop()


def sign_in(client: TestClient, email: str, password: str, *, next: str | None = None) -> Response:
    """What a person does: open the sign-in page, fill in the form, submit."""
    page = client.get("/dashboard/login")
    assert page.status_code == 200, page.text
    form = {"csrf_token": csrf_token(page), "email": email, "password": password}
    if next is not None:
        form["next"] = next
    return client.post("/dashboard/login", data=form)


@dataclass
class Dashboard:
    """A browser signed in as one dashboard user of one account."""

    client: TestClient
    account: AccountKeys
    email: str
    user_pk: int
    password: str = PASSWORD
    _csrf: str | None = field(default=None, repr=False)

    @property
    def cookie(self) -> str:
        value = self.client.cookies.get("oi_session")
        assert value, "this browser has no session cookie"
        return value

    def csrf(self) -> str:
        """The session's CSRF token, read from a signed-in page."""
        if self._csrf is None:
            page = self.client.get("/dashboard/team")
            assert page.status_code == 200, page.text
            self._csrf = csrf_token(page)
        return self._csrf

    def forget_csrf(self) -> None:
        """After a new sign-in (a new session has a new token)."""
        self._csrf = None

    def get(self, path: str, **params: Any) -> Response:
        return self.client.get(path, params=params or None)

    def post(
        self,
        path: str,
        data: dict[str, str] | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """A form submitted from a page of this session (with its CSRF token)."""
        return self.client.post(
            path, data={"csrf_token": self.csrf(), **(data or {})}, headers=headers
        )

    def page(self, path: str, **params: Any) -> str:
        response = self.get(path, **params)
        assert response.status_code == 200, (response.status_code, response.text[:2000])
        return response.text


def signed_in(
    client: TestClient,
    account: AccountKeys | None = None,
    *,
    role: str = "owner",
    email: str | None = None,
    name: str = "Acme",
    base_url: str = "http://testserver",
) -> Dashboard:
    """A fresh browser signed in as a new user (of a new account unless given)."""
    db = db_of(client)
    account = account or make_account(db, name=name)
    user_pk, email = add_user(db, account, email=email, role=role)
    who = browser(client, base_url)
    response = sign_in(who, email, PASSWORD)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/dashboard"
    return Dashboard(who, account, email, user_pk)


def again(dashboard: Dashboard) -> Dashboard:
    """The same user signed in from a second browser."""
    other = browser(dashboard.client)
    response = sign_in(other, dashboard.email, dashboard.password)
    assert response.status_code == 303, response.text
    return Dashboard(other, dashboard.account, dashboard.email, dashboard.user_pk)


def anonymous(client: TestClient) -> tuple[TestClient, str]:
    """A signed-out browser that has opened the sign-in page: (browser, its form token)."""
    who = browser(client)
    page = who.get("/dashboard/login")
    assert page.status_code == 200
    return who, csrf_token(page)


def set_cookie(response: Response, name: str) -> dict[str, str] | None:
    """The attributes of the Set-Cookie header for ``name`` (keys lower case;
    the value under "value"), or None when the response sets no such cookie."""
    for header in response.headers.get_list("set-cookie"):
        first, *attributes = (part.strip() for part in header.split(";"))
        cookie_name, _, value = first.partition("=")
        if cookie_name != name:
            continue
        parsed = {"value": value}
        for attribute in attributes:
            key, _, attr_value = attribute.partition("=")
            parsed[key.lower()] = attr_value or "true"
        return parsed
    return None


# Impacts --------------------------------------------------------------------------------


def caller(db: Database, account: AccountKeys, env: str = "production") -> Caller:
    def load(session: Session) -> Caller:
        row = _account(session, account.user_id)
        return Caller(row.id, row.user_id, row.email, row.name, env, "")

    return db.run_sync(load)


@dataclass(frozen=True)
class Planned:
    impact_type: str = "tree_planted"
    amount: int = 1
    at_ms: int | None = None  # the wall clock of the impact (in the past), else now
    customer_email: str | None = None
    customer_name: str | None = None
    metadata: dict[str, str] | None = None
    category: str | None = None


def record(
    db: Database, account: AccountKeys, planned: Iterable[Planned], env: str = "production"
) -> list[str]:
    """Record impacts through the API's own service (oldest first: times only
    go forward); returns their tracking ids in order."""
    who = caller(db, account, env)

    def create(session: Session) -> list[str]:
        ids = []
        for p in planned:
            new = NewImpact(
                p.impact_type,
                p.amount,
                p.category,
                p.customer_email,
                p.customer_name,
                False,
                p.metadata,
            )
            body = record_impact(session, who, new, now=p.at_ms).body
            ids.append(f"{account.user_id}-{body['time_utc']}")
        return ids

    return db.run_sync(create, write=True)


def advance_impact(db: Database, tracking_id: str, *actions: str, env: str = "production") -> None:
    """Move one impact forward (receive, transfer, complete), as the operator does."""

    def go(session: Session) -> None:
        impact = impact_by_tracking_id(session, tracking_id, env)
        for action in actions:
            changed = advance(
                session,
                STEPS[action],
                [impact.id],
                stamp=literal(now_ms(), BigInteger),
                actor="test",
                batch_id=new_batch_id(action),
            ).changed
            assert changed == 1, f"{action} did not apply to {tracking_id}"

    db.run_sync(go, write=True)


def impact_row(db: Database, tracking_id: str, env: str = "production") -> Impact:
    return db.run_sync(lambda s: impact_by_tracking_id(s, tracking_id, env))


def key_prefixes(db: Database, account: AccountKeys) -> dict[str, int | None]:
    """Every key prefix of the account and when it was revoked (None: active)."""

    def load(session: Session) -> dict[str, int | None]:
        account_id = _account(session, account.user_id).id
        rows = session.execute(
            select(ApiKey.prefix, ApiKey.revoked_ms).where(ApiKey.account_id == account_id)
        )
        return {prefix: revoked for prefix, revoked in rows}

    return db.run_sync(load)


def iso_day(ms: int) -> str:
    return ms_to_iso(ms)[:10]


# Reading pages --------------------------------------------------------------------------

_IMPACT_LINK = re.compile(r'<a [^>]*href="/dashboard/impacts/([^"/?]+)"')


def listed_impacts(page: str) -> list[str]:
    """Tracking ids of the impacts a table links to, top to bottom."""
    return [unquote(found) for found in _IMPACT_LINK.findall(page)]


def link(page: str, text: str) -> str | None:
    """The address of the link whose visible text is ``text`` (None: no such link)."""
    for href, label in re.findall(r'<a [^>]*href="([^"]*)"[^>]*>(.*?)</a>', page, re.S):
        if visible_text(label) == text:
            return html_lib.unescape(href)
    return None


def next_page(page: str) -> str | None:
    return link(page, "Next page")


def button(page: str, text: str) -> str:
    """The attributes of the button whose visible text is ``text``."""
    for attributes, label in re.findall(r"<button([^>]*)>(.*?)</button>", page, re.S):
        if visible_text(label) == text:
            return str(attributes)
    raise AssertionError(f"no button {text!r} on the page")


def visible_text(page: str) -> str:
    """The page's text as a person sees it: no tags, entities decoded, spaces collapsed."""
    without = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    text = html_lib.unescape(re.sub(r"<[^>]+>", " ", without))
    return re.sub(r"\s+", " ", text).strip()


def form_field(page: str, name: str) -> str:
    """The HTML of the form field whose label is for ``name``: label, hint,
    error and control (the GOV.UK pattern: the message sits next to the field)."""
    found = re.search(
        rf'<div class="field[^"]*">\s*<label for="{re.escape(name)}">.*?</div>', page, re.S
    )
    assert found, f"no field labelled for {name}"
    return found.group(0)


def field_error(page: str, name: str) -> str | None:
    """The error message shown next to the field ``name`` (visible text), if any."""
    found = re.search(
        r'<p class="field-error" id="([^"]+)-error">(.*?)</p>', form_field(page, name), re.S
    )
    if not found:
        return None
    assert found.group(1) == name
    return visible_text(found.group(2)).removeprefix("Error:").strip()
