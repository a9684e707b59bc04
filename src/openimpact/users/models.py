from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from openimpact.db import Base, BigIntPK

ROLES = ("owner", "member")


class User(Base):
    """A person who signs in to the dashboard of one account.

    The email is unique across the server (case-insensitive), because signing
    in with it must name exactly one account. ``password_hash`` is an Argon2id
    hash, absent until the invitation link has been used.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(254))
    email_key: Mapped[str] = mapped_column(String(254), unique=True)
    role: Mapped[str] = mapped_column(String(10))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    password_set_ms: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index(None, "account_id", "id"),)


class UserSession(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256
    is stored, so a copy of the database signs nobody in. A session ends when
    it is revoked (sign-out, password change, removal), when it has been idle
    too long, or at its absolute expiry, whichever comes first."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # The synchronizer token every state-changing request of this session carries.
    csrf_token: Mapped[str] = mapped_column(String(64))
    # The environment the dashboard shows (the switch in the header).
    env: Mapped[str] = mapped_column(String(10), default="production")
    created_ms: Mapped[int] = mapped_column(BigInteger)
    last_seen_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    revoked_ms: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index(None, "user_id"),)


class UserToken(Base):
    """A one-time link: an invitation to set a first password, or a password
    reset. Only the token's SHA-256 is stored; it works once, until it expires."""

    __tablename__ = "user_tokens"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(10))  # "invite" | "reset"
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    used_ms: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index(None, "user_id", "purpose"),)
