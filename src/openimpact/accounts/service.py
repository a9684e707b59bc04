"""Accounts, their API keys, and the per-environment ledgers."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from openimpact.accounts.models import ENVIRONMENTS, Account, ApiKey, Ledger, ServerSecret
from openimpact.errors import NotFound, ValidationFailed
from openimpact.timeutil import now_ms

KEY_PREFIXES = {"sandbox": "oi_test_", "production": "oi_live_"}
_VISIBLE_CHARS = 8  # of the random part, shown in listings to tell keys apart


def hash_key(key: str) -> str:
    # Keys are 256-bit random tokens, so a fast hash is enough: there is no
    # low-entropy secret to stretch (unlike passwords).
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def env_of_key(key: str) -> str | None:
    for env, prefix in KEY_PREFIXES.items():
        if key.startswith(prefix):
            return env
    return None


@dataclass(frozen=True)
class IssuedKey:
    key: str
    prefix: str
    env: str
    user_id: str


def _new_user_id(session: Session) -> str:
    while True:
        candidate = f"U{secrets.randbelow(9_000_000_000) + 1_000_000_000}"
        if session.scalar(select(Account.id).where(Account.user_id == candidate)) is None:
            return candidate


def create_account(
    session: Session, *, email: str, name: str | None = None, causes: list[str] | None = None
) -> tuple[Account, dict[str, IssuedKey]]:
    email = email.strip()
    if not email or "@" not in email or len(email) > 254:
        raise ValidationFailed("email: must be an email address")
    account = Account(
        user_id=_new_user_id(session),
        email=email,
        name=(name or email.split("@", 1)[0]).strip()[:200],
        causes=causes or ["trees"],
        project_overrides={},
        created_ms=now_ms(),
    )
    session.add(account)
    session.flush()
    for env in ENVIRONMENTS:
        session.add(Ledger(account_id=account.id, env=env, last_ms=0))
    keys = {env: create_key(session, account, env) for env in ENVIRONMENTS}
    return account, keys


def create_key(session: Session, account: Account, env: str) -> IssuedKey:
    if env not in ENVIRONMENTS:
        raise ValidationFailed("env: must be sandbox or production")
    key = KEY_PREFIXES[env] + secrets.token_urlsafe(32)
    prefix = key[: len(KEY_PREFIXES[env]) + _VISIBLE_CHARS]
    session.add(
        ApiKey(
            account_id=account.id,
            env=env,
            prefix=prefix,
            key_hash=hash_key(key),
            created_ms=now_ms(),
        )
    )
    session.flush()
    return IssuedKey(key=key, prefix=prefix, env=env, user_id=account.user_id)


def get_account(session: Session, user_id: str) -> Account:
    account = session.scalar(select(Account).where(Account.user_id == user_id))
    if account is None:
        raise NotFound(f"no account with user_id {user_id}")
    return account


def list_keys(session: Session, account: Account) -> list[ApiKey]:
    return list(
        session.scalars(select(ApiKey).where(ApiKey.account_id == account.id).order_by(ApiKey.id))
    )


def revoke_key(session: Session, prefix: str) -> ApiKey:
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None:
        raise NotFound(f"no key with prefix {prefix}")
    if key.revoked_ms is None:
        session.execute(update(ApiKey).where(ApiKey.id == key.id).values(revoked_ms=now_ms()))
        session.refresh(key)
    return key


def set_causes(session: Session, account: Account, causes: list[str]) -> None:
    from openimpact.projects.service import known_causes

    known = known_causes(session)
    unknown = [c for c in causes if c not in known]
    if not causes or unknown:
        raise ValidationFailed(
            f"causes: unknown cause(s) {', '.join(unknown) or '(none given)'}; "
            f"known causes: {', '.join(sorted(known))}"
        )
    account.causes = list(dict.fromkeys(causes))
    session.flush()


def server_secret(session: Session, name: str) -> str:
    """A random secret shared by all workers, created on first use."""
    value = session.scalar(select(ServerSecret.value).where(ServerSecret.name == name))
    if value is not None:
        return value
    try:
        with session.begin_nested():
            session.add(ServerSecret(name=name, value=secrets.token_hex(32)))
    except IntegrityError:
        pass  # another worker created it first; read theirs
    value = session.scalar(select(ServerSecret.value).where(ServerSecret.name == name))
    assert value is not None
    return value
