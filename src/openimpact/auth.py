"""Who is calling: an API key names one account and one environment.

Routers declare ``AccountDep`` once at router level, so a new route is
protected by default. The operator token for ``/admin/v1`` is a different kind
of credential and is never accepted as an account key (and vice versa).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from openimpact.accounts.models import Account, ApiKey
from openimpact.accounts.service import env_of_key, hash_key
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


async def current_caller(request: Request) -> Caller:
    key = request.headers.get("x-api-key")
    if not key:
        raise KeyError_("missing x-api-key header")
    key = key.strip()
    if env_of_key(key) is None or len(key) > 200:
        raise KeyError_(UNKNOWN_KEY)
    db = request.app.state.db
    caller = await db.run(_lookup, hash_key(key))
    if caller is None:
        raise KeyError_(UNKNOWN_KEY)
    await enforce_rate_limit(request.app.state.limiter, caller.key_hash)
    request.state.caller = caller
    return caller


AccountDep = Annotated[Caller, Depends(current_caller)]


async def require_operator(request: Request) -> None:
    expected = request.app.state.settings.admin_token
    if not expected:
        raise Forbidden("the admin API is disabled: set OPENIMPACT_ADMIN_TOKEN to enable it")
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not token or not hmac.compare_digest(token.encode(), expected.encode()):
        raise KeyError_("invalid operator token")


OperatorDep = Depends(require_operator)
