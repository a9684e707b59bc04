"""Who is calling: an API key names one account and one environment.

Routers declare ``AccountDep`` once at router level, so a new route is
protected by default. The operator token for ``/admin/v1`` is a different kind
of credential and is never accepted as an account key (and vice versa).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from openimpact.accounts.models import Account, ApiKey
from openimpact.accounts.service import env_of_key, hash_key
from openimpact.db import guard_transactions
from openimpact.errors import Forbidden, KeyError_
from openimpact.ratelimit import enforce_rate_limit

UNKNOWN_KEY = "API Key does not exist"


@dataclass(frozen=True, slots=True)
class Caller:
    account_id: int
    user_id: str
    email: str
    name: str
    env: str
    key_hash: str


def _lookup(session: Session, key_hash: str) -> Caller | None:
    row = session.execute(
        select(Account.id, Account.user_id, Account.email, Account.name, ApiKey.env)
        .join(ApiKey, ApiKey.account_id == Account.id)
        .where(ApiKey.key_hash == key_hash, ApiKey.revoked_ms.is_(None))
    ).first()
    if row is None:
        return None
    return Caller(row[0], row[1], row[2], row[3], row[4], key_hash)


# Requests that may change data: their work runs in a transaction of its own,
# in which a cached key can be confirmed (see KeyCache).
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_STILL_VALID = select(ApiKey.id).where(
    ApiKey.key_hash == bindparam("p_key_hash"), ApiKey.revoked_ms.is_(None)
)


class KeyCache:
    """Who each recently seen key belongs to, per worker process (issue 4).

    A lookup costs a transaction of its own on every request, and on
    PostgreSQL a second trip through the thread pool. A request that changes
    data instead takes the Caller from here and confirms the key with the
    first statement of its own write transaction (db.guard_transactions), so
    a revoked or deleted key still fails at once, on every worker, with no
    invalidation message to miss: nothing is trusted without that check.
    Reads keep the lookup, because some of them (whoami) open no transaction
    in which the check could run. Since the check now runs after the body is
    validated, a revoked key with an invalid body gets the 400 rather than
    the 401; neither reveals anything about the account.
    """

    def __init__(self, max_entries: int = 10_000, ttl_seconds: float = 300.0) -> None:
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._entries: dict[str, tuple[Caller, float]] = {}

    def get(self, key_hash: str) -> Caller | None:
        entry = self._entries.get(key_hash)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def put(self, caller: Caller) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)), None)  # the oldest
        self._entries[caller.key_hash] = (caller, time.monotonic() + self.ttl_seconds)

    def discard(self, key_hash: str) -> None:
        self._entries.pop(key_hash, None)

    def confirmation(self, key_hash: str) -> Callable[[Session], None]:
        """The check that the key is still valid, run in the request's
        transaction; it drops the key from the cache and refuses otherwise."""

        def confirm(session: Session) -> None:
            found = session.connection().execute(_STILL_VALID, {"p_key_hash": key_hash}).first()
            if found is None:
                self.discard(key_hash)
                raise KeyError_(UNKNOWN_KEY)

        return confirm


def key_cache(request: Request) -> KeyCache:
    state = request.app.state
    cache = getattr(state, "key_cache", None)
    if cache is None:
        cache = state.key_cache = KeyCache()
    return cache


# Declared as an OpenAPI security scheme so /docs, client generators and
# fuzzers know that every /v1 operation needs the key; the check is ours.
_API_KEY_HEADER = APIKeyHeader(
    name="x-api-key",
    auto_error=False,
    description="An account key: oi_test_... (sandbox) or oi_live_... (production)",
)


async def current_caller(
    request: Request, key: Annotated[str | None, Security(_API_KEY_HEADER)] = None
) -> Caller:
    return await authenticate(request, key)


async def authenticate(request: Request, key: str | None) -> Caller:
    """The caller of ``key`` (the ``x-api-key`` header), rate limited; the
    dependency above, and the impact writes' fast path (impacts/fastpath.py)."""
    if not key:
        raise KeyError_("missing x-api-key header")
    key = key.strip()
    if env_of_key(key) is None or len(key) > 200:
        raise KeyError_(UNKNOWN_KEY)
    key_hash = hash_key(key)
    cache = key_cache(request)
    caller = cache.get(key_hash) if request.method not in _SAFE_METHODS else None
    if caller is not None:
        guard_transactions(cache.confirmation(key_hash))
    else:
        caller = await request.app.state.db.run(_lookup, key_hash)
        if caller is None:
            cache.discard(key_hash)
            raise KeyError_(UNKNOWN_KEY)
        cache.put(caller)
    await enforce_rate_limit(request.app.state.limiter, caller.key_hash)
    request.state.caller = caller
    return caller


AccountDep = Annotated[Caller, Depends(current_caller)]


# Declared for OpenAPI like the key above; the constant-time check is ours.
_OPERATOR_BEARER = HTTPBearer(
    auto_error=False,
    description="The operator token (OPENIMPACT_ADMIN_TOKEN); never an account key",
)


async def require_operator(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_OPERATOR_BEARER)] = None,
) -> None:
    expected = request.app.state.settings.admin_token
    if not expected:
        raise Forbidden("the admin API is disabled: set OPENIMPACT_ADMIN_TOKEN to enable it")
    token = credentials.credentials.strip() if credentials is not None else ""
    if not token or not hmac.compare_digest(token.encode(), expected.encode()):
        raise KeyError_("invalid operator token")


OperatorDep = Depends(require_operator)
