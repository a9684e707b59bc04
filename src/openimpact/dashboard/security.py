"""Who is signed in to the dashboard, and the checks every request passes.

- The session cookie (``oi_session``) holds a random token whose hash names
  a server-side session (users/models.py): HttpOnly, SameSite=Lax, scoped to
  /dashboard, and Secure when the public URL is https.
- Every state-changing request carries a CSRF token: the session's own
  (synchronizer token) once signed in, or, on the sign-in and link pages, the
  value of an ``oi_csrf`` cookie (double submit). ``csrf_guard`` is a
  dependency of the whole dashboard router, so a new route is protected by
  default.
- Sign-in and reset attempts are throttled per email and per IP with the
  ``limits`` library, in memory or in Redis like the API's rate limits.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter

from openimpact.auth import Caller
from openimpact.config import Settings
from openimpact.errors import Forbidden, OpenImpactError
from openimpact.ratelimit import Limiter, make_storage, retry_after
from openimpact.users import service as users
from openimpact.users.service import Member

SESSION_COOKIE = "oi_session"
ANON_CSRF_COOKIE = "oi_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


class SignInRequired(OpenImpactError):
    """No valid session: pages redirect to the sign-in page."""

    type = "sign_in_required"
    status = 401


def cookie_secure(settings: Settings) -> bool:
    return (settings.public_url or "").lower().startswith("https://")


def session_limits(settings: Settings) -> tuple[int, int]:
    """(idle, absolute) session lifetimes in milliseconds."""
    return settings.session_idle_minutes * 60_000, settings.session_max_hours * 3_600_000


async def signed_in(request: Request) -> Member | None:
    """The member of this request's session cookie (resolved once per request)."""
    if hasattr(request.state, "member"):
        return request.state.member  # type: ignore[no-any-return]
    member = None
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        db = request.app.state.db
        idle_ms, _ = session_limits(request.app.state.settings)
        member = await db.run(lambda s: users.resolve_session(s, token, idle_ms=idle_ms))
        if member is not None and member.stale:
            await db.run(users.touch_session, member.session_id, write=True)
    request.state.member = member
    return member


async def current_member(request: Request) -> Member:
    member = await signed_in(request)
    if member is None:
        raise SignInRequired("sign in to continue")
    return member


MemberDep = Annotated[Member, Depends(current_member)]


async def require_owner(member: MemberDep) -> Member:
    if not member.is_owner:
        raise Forbidden("only an owner of the account can do this")
    return member


OwnerDep = Annotated[Member, Depends(require_owner)]


def caller_of(member: Member) -> Caller:
    """The member as the API's Caller, so pages go through the same tenant
    filter and services as the API (no key: the session stands for one)."""
    return Caller(
        account_id=member.account_id,
        user_id=member.account_user_id,
        email=member.account_email,
        name=member.account_name,
        env=member.env,
        key_hash="",
    )


def new_anonymous_csrf() -> str:
    return secrets.token_urlsafe(24)


async def csrf_guard(request: Request) -> None:
    """Refuse a state-changing request whose CSRF token does not match."""
    if request.method in _SAFE:
        return
    sent = request.headers.get(CSRF_HEADER)
    if not sent:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    member = await signed_in(request)
    expected = member.csrf_token if member is not None else request.cookies.get(ANON_CSRF_COOKIE)
    if not users.same_token(sent, expected):
        raise Forbidden(
            "this form has expired or did not come from this site; reload the page and try again"
        )


# Sign-in throttling ----------------------------------------------------------------------


@dataclass
class SignInThrottle:
    per_email: Limiter
    per_ip: Limiter

    async def check(self, email: str, ip: str) -> int | None:
        """Seconds to wait before another attempt, or None when allowed. The
        email is hashed: it is a key in a shared store, not data to keep."""
        who = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
        for limiter, key in ((self.per_ip, ip), (self.per_email, who)):
            wait = await retry_after(limiter, "signin", key)
            if wait is not None:
                return wait
        return None


def make_throttle(settings: Settings) -> SignInThrottle:
    storage = make_storage(settings.redis_url)
    strategy = MovingWindowRateLimiter(storage)
    item = parse(settings.signin_rate_limit)
    # One office or VPN shares an address: the IP gets five times an email's budget.
    ip_item = parse(f"{item.amount * 5}/{item.multiples}{item.GRANULARITY.name}")
    return SignInThrottle(
        per_email=Limiter(item=item, strategy=strategy, storage=storage),
        per_ip=Limiter(item=ip_item, strategy=strategy, storage=storage),
    )


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def login_url(next_path: str | None = None) -> str:
    if next_path and next_path.startswith("/dashboard") and not next_path.startswith("//"):
        return "/dashboard/login?next=" + quote(next_path, safe="/")
    return "/dashboard/login"


def safe_next(next_path: str | None) -> str:
    """Where to go after signing in: only a dashboard path of this site."""
    if (
        next_path
        and next_path.startswith("/dashboard")
        and not next_path.startswith("/dashboard/login")
        and "\\" not in next_path
        and "//" not in next_path
    ):
        return next_path
    return "/dashboard"
