"""Dashboard users: invitations, passwords, sessions and one-time links.

    invite ──link (7 days, once)──▶ set password ──▶ sign in ──▶ session
                                      ▲                          │
    forgot password ──link (1 hour, once)──┘      sign out, password change,
                                                  removal: every session revoked

Passwords are hashed with Argon2id (argon2-cffi's defaults, RFC 9106's second
recommended option). Tokens in links and cookies are 256-bit random strings;
only their SHA-256 is stored, like API keys (accounts/service.py).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from openimpact.accounts.models import ENVIRONMENTS, Account
from openimpact.config import Settings
from openimpact.db import rowcount
from openimpact.errors import NotFound, ValidationFailed
from openimpact.outbox import service as outbox
from openimpact.timeutil import now_ms
from openimpact.users.models import ROLES, User, UserSession, UserToken

INVITE_TTL_MS = 7 * 86_400_000
RESET_TTL_MS = 3_600_000
MIN_PASSWORD = 10
MAX_PASSWORD = 1000
# Refreshing last_seen on every page view would make every read a write.
_TOUCH_EVERY_MS = 60_000

_hasher = PasswordHasher()
# Verified when the email is unknown, so that a wrong email costs the same
# time as a wrong password and the answer reveals nothing.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
_EMAIL = re.compile(r"^[^\s@]+@[^\s@]+\.[^\s@]+$")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def normalize_email(email: str, field: str = "email") -> str:
    email = (email or "").strip()
    if not _EMAIL.match(email) or len(email) > 254:
        raise ValidationFailed(f"{field}: enter an email address like name@example.com")
    return email


def check_password(password: str, field: str = "password") -> str:
    if len(password) < MIN_PASSWORD:
        raise ValidationFailed(f"{field}: must be at least {MIN_PASSWORD} characters long")
    if len(password) > MAX_PASSWORD:
        raise ValidationFailed(f"{field}: must be at most {MAX_PASSWORD} characters long")
    if not password.strip():
        raise ValidationFailed(f"{field}: must not be only spaces")
    return password


# Users ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Invitation:
    user: User
    token: str


def invite(session: Session, account: Account, email: str, role: str = "member") -> Invitation:
    """Add a user to the account (or invite again one who has not set a
    password yet) and issue a fresh invitation link; earlier links stop working."""
    if role not in ROLES:
        raise ValidationFailed(f"role: must be one of {', '.join(ROLES)}")
    email = normalize_email(email)
    user = session.scalar(select(User).where(User.email_key == email.lower()))
    if user is not None and user.account_id != account.id:
        # The same answer as for a member of this account would leak that the
        # address has an account elsewhere; but one email must name one user.
        raise ValidationFailed("email: this address cannot be invited; use another address")
    if user is not None and user.password_hash is not None:
        raise ValidationFailed(f"email: the address {email} is already a member of this account")
    now = now_ms()
    if user is None:
        user = User(
            account_id=account.id, email=email, email_key=email.lower(), role=role, created_ms=now
        )
        session.add(user)
        session.flush()
    else:
        user.role = role
    return Invitation(user, _issue_token(session, user, "invite", INVITE_TTL_MS, now))


def _issue_token(session: Session, user: User, purpose: str, ttl_ms: int, now: int) -> str:
    session.execute(
        update(UserToken)
        .where(
            UserToken.user_id == user.id,
            UserToken.purpose == purpose,
            UserToken.used_ms.is_(None),
        )
        .values(used_ms=now)
    )
    token = secrets.token_urlsafe(32)
    session.add(
        UserToken(
            token_hash=_digest(token),
            user_id=user.id,
            purpose=purpose,
            created_ms=now,
            expires_ms=now + ttl_ms,
        )
    )
    session.flush()
    return token


def add_user(session: Session, account: Account, email: str, role: str, password: str) -> User:
    """A user who can sign in at once (the demo, and operators' scripts)."""
    if role not in ROLES:
        raise ValidationFailed(f"role: must be one of {', '.join(ROLES)}")
    email = normalize_email(email)
    if session.scalar(select(User.id).where(User.email_key == email.lower())) is not None:
        raise ValidationFailed(f"email: {email} is already a dashboard user")
    check_password(password)
    now = now_ms()
    user = User(
        account_id=account.id,
        email=email,
        email_key=email.lower(),
        role=role,
        created_ms=now,
        password_hash=hash_password(password),
        password_set_ms=now,
    )
    session.add(user)
    session.flush()
    return user


def users_of(session: Session, account_id: int) -> list[User]:
    return list(
        session.scalars(select(User).where(User.account_id == account_id).order_by(User.id))
    )


def user_of_account(session: Session, account_id: int, user_pk: int) -> User:
    """One user of the account; another account's user is the same 404 as none."""
    user = session.get(User, user_pk)
    if user is None or user.account_id != account_id:
        raise NotFound("no such user in this account")
    return user


def find_by_email(session: Session, account_id: int, email: str) -> User:
    user = session.scalar(
        select(User).where(User.account_id == account_id, User.email_key == email.strip().lower())
    )
    if user is None:
        raise NotFound(f"no user {email.strip()} in this account")
    return user


def remove(session: Session, account_id: int, user: User) -> None:
    """Remove a user; an account always keeps at least one owner who can sign in."""
    if user.role == "owner":
        owners = session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.account_id == account_id, User.role == "owner", User.id != user.id)
            .where(User.password_hash.is_not(None))
        )
        if not owners:
            raise ValidationFailed(
                "user: the last owner who can sign in cannot be removed; make another owner first"
            )
    session.execute(delete(User).where(User.id == user.id))


# Passwords and one-time links ------------------------------------------------------------


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _token_row(session: Session, token: str, purpose: str, now: int) -> UserToken | None:
    if not token or len(token) > 100:
        return None
    row = session.scalar(
        select(UserToken).where(
            UserToken.token_hash == _digest(token), UserToken.purpose == purpose
        )
    )
    if row is None or row.used_ms is not None or row.expires_ms <= now:
        return None
    return row


def token_user(session: Session, token: str, purpose: str) -> User | None:
    """The user a still-valid link belongs to, without using it up."""
    row = _token_row(session, token, purpose, now_ms())
    return session.get(User, row.user_id) if row is not None else None


def use_token(session: Session, token: str, purpose: str, password: str) -> User:
    """Set the password through an invitation or reset link; the link is then
    spent, and every session of the user ends."""
    now = now_ms()
    row = _token_row(session, token, purpose, now)
    if row is None:
        raise NotFound("this link has expired or has already been used")
    check_password(password)
    # The conditional update is what makes the link single-use under races.
    spent = session.execute(
        update(UserToken)
        .where(UserToken.id == row.id, UserToken.used_ms.is_(None))
        .values(used_ms=now)
    )
    if rowcount(spent) != 1:
        raise NotFound("this link has expired or has already been used")
    user = session.get(User, row.user_id)
    assert user is not None
    _set_password(session, user, password, now)
    return user


def _set_password(session: Session, user: User, password: str, now: int) -> None:
    """A new password ends every session of the user and voids every link
    still out: a reset link someone else got hold of stops working when the
    person changes the password themselves (OWASP Forgot Password)."""
    user.password_hash = hash_password(password)
    user.password_set_ms = now
    revoke_sessions(session, user.id, now)
    session.execute(
        update(UserToken)
        .where(UserToken.user_id == user.id, UserToken.used_ms.is_(None))
        .values(used_ms=now)
    )
    session.flush()


def change_password(session: Session, user_pk: int, current: str, new: str) -> None:
    user = session.get(User, user_pk)
    if user is None or not _verify(user.password_hash, current):
        raise ValidationFailed("current_password: is not your current password")
    check_password(new, "new_password")
    _set_password(session, user, new, now_ms())


def request_reset(session: Session, email: str) -> tuple[User, str] | None:
    """A reset link for a user who can sign in; None for any other address
    (the page says the same either way)."""
    user = session.scalar(select(User).where(User.email_key == email.strip().lower()))
    if user is None or user.password_hash is None:
        return None
    return user, _issue_token(session, user, "reset", RESET_TTL_MS, now_ms())


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The user with this email and password, or None: the same None, after
    the same Argon2 work, for an unknown email and a wrong password."""
    user = session.scalar(select(User).where(User.email_key == (email or "").strip().lower()))
    if not _verify(user.password_hash if user else None, password or ""):
        return None
    assert user is not None and user.password_hash is not None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


# Sessions ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    """Who is signed in, and what the dashboard shows them."""

    session_id: int
    csrf_token: str
    env: str
    user_pk: int
    email: str
    role: str
    account_id: int
    account_user_id: str
    account_email: str
    account_name: str
    stale: bool = False

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"


def start_session(session: Session, user_pk: int, *, max_ms: int) -> str:
    """A new session (and so a new id: never one the browser brought along);
    the idle limit is enforced on each use (resolve_session)."""
    now = now_ms()
    token = secrets.token_urlsafe(32)
    session.add(
        UserSession(
            token_hash=_digest(token),
            user_id=user_pk,
            csrf_token=secrets.token_urlsafe(32),
            env="production",
            created_ms=now,
            last_seen_ms=now,
            expires_ms=now + max_ms,
        )
    )
    session.flush()
    return token


def resolve_session(session: Session, token: str, *, idle_ms: int) -> Member | None:
    """The member behind a session cookie, or None when the session is unknown,
    revoked, idle for too long or past its absolute expiry. Read-only: the
    caller refreshes the idle clock with :func:`touch_session` when
    ``Member.stale`` says so, so that a page view is not a write."""
    if not token or len(token) > 100:
        return None
    now = now_ms()
    row = session.execute(
        select(UserSession, User, Account)
        .join(User, User.id == UserSession.user_id)
        .join(Account, Account.id == User.account_id)
        .where(UserSession.token_hash == _digest(token))
    ).first()
    if row is None:
        return None
    user_session, user, account = row
    if (
        user_session.revoked_ms is not None
        or user_session.expires_ms <= now
        or user_session.last_seen_ms + idle_ms <= now
        or user.password_hash is None
    ):
        return None
    return Member(
        session_id=user_session.id,
        csrf_token=user_session.csrf_token,
        env=user_session.env,
        user_pk=user.id,
        email=user.email,
        role=user.role,
        account_id=account.id,
        account_user_id=account.user_id,
        account_email=account.email,
        account_name=account.name,
        stale=now - user_session.last_seen_ms >= _TOUCH_EVERY_MS,
    )


def touch_session(session: Session, session_id: int) -> None:
    session.execute(
        update(UserSession).where(UserSession.id == session_id).values(last_seen_ms=now_ms())
    )


def end_session(session: Session, session_id: int) -> None:
    session.execute(
        update(UserSession)
        .where(UserSession.id == session_id, UserSession.revoked_ms.is_(None))
        .values(revoked_ms=now_ms())
    )


def revoke_sessions(session: Session, user_pk: int, now: int | None = None) -> int:
    return rowcount(
        session.execute(
            update(UserSession)
            .where(UserSession.user_id == user_pk, UserSession.revoked_ms.is_(None))
            .values(revoked_ms=now if now is not None else now_ms())
        )
    )


def switch_env(session: Session, session_id: int, env: str) -> None:
    if env not in ENVIRONMENTS:
        raise ValidationFailed("env: must be production or sandbox")
    session.execute(update(UserSession).where(UserSession.id == session_id).values(env=env))


def same_token(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


def describe(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "role": user.role,
        "status": "active" if user.password_hash else "invited",
        "created_ms": user.created_ms,
    }


# Emails ----------------------------------------------------------------------------------


def invite_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/dashboard/invite/{token}"


def reset_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/dashboard/reset/{token}"


def _queue_email(session: Session, account_id: int, payload: dict[str, Any]) -> None:
    outbox.enqueue(session, [outbox.message("email", account_id, "production", payload, now_ms())])


@dataclass(frozen=True)
class SentInvitation:
    email: str
    role: str
    url: str
    emailed: bool


def send_invite(
    session: Session, account: Account, email: str, role: str, base_url: str, settings: Settings
) -> SentInvitation:
    """Invite, and email the link in the same transaction when SMTP is set up
    (the outbox delivers it); the link is returned to be shown once either way."""
    invitation = invite(session, account, email, role)
    url = invite_url(base_url, invitation.token)
    emailed = bool(settings.smtp_url)
    if emailed:
        _queue_email(
            session,
            account.id,
            {
                "template": "user_invite",
                "to": invitation.user.email,
                "account_name": account.name,
                "role": invitation.user.role,
                "url": url,
            },
        )
    return SentInvitation(invitation.user.email, invitation.user.role, url, emailed)


def send_reset(session: Session, email: str, base_url: str, settings: Settings) -> bool:
    """Email a reset link to a user who can sign in; False when nothing was sent."""
    found = request_reset(session, email)
    if found is None or not settings.smtp_url:
        return False
    user, token = found
    account = session.get(Account, user.account_id)
    _queue_email(
        session,
        user.account_id,
        {
            "template": "user_reset",
            "to": user.email,
            "account_name": account.name if account else "",
            "url": reset_url(base_url, token),
        },
    )
    return True
