from __future__ import annotations

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from openimpact.db import Base, BigIntPK

ENVIRONMENTS = ("sandbox", "production")


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(32), unique=True)
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(200))
    # Causes this account may donate to (donate_money's category); the first is
    # the default when a donation names none.
    causes: Mapped[list[str]] = mapped_column(JSON, default=lambda: ["trees"])
    # Per-account project choice: {"tree_planted": "project-id", "tree_planted:food": ...}
    project_overrides: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    # The operator's plan for the account (plans/), whose bonus impacts it
    # receives each month.
    plan_id: Mapped[int | None] = mapped_column(BigInteger)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    env: Mapped[str] = mapped_column(String(10))
    # The visible start of the key (oi_test_XXXXXXXX / oi_live_XXXXXXXX), kept to
    # list and revoke keys; the key itself is only ever stored as a SHA-256.
    prefix: Mapped[str] = mapped_column(String(24), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    revoked_ms: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index(None, "account_id", "env"),)


class Ledger(Base):
    """One row per account and environment: running totals and the clock.

    Every impact write updates this row first, which (a) keeps totals O(1) to
    read, (b) serializes writers of one account and environment so ``time_utc``
    can be allocated unique and increasing, and (c) gives concurrent requests
    with one Idempotency-Key a single place to queue.
    """

    __tablename__ = "ledgers"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    env: Mapped[str] = mapped_column(String(10), primary_key=True)
    last_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    user_tree_planted: Mapped[int] = mapped_column(BigInteger, default=0)
    user_waste_removed: Mapped[int] = mapped_column(BigInteger, default=0)
    user_carbon_captured: Mapped[int] = mapped_column(BigInteger, default=0)
    user_coral_restored: Mapped[int] = mapped_column(BigInteger, default=0)
    user_money_donated: Mapped[int] = mapped_column(BigInteger, default=0)
    customer_tree_planted: Mapped[int] = mapped_column(BigInteger, default=0)
    customer_waste_removed: Mapped[int] = mapped_column(BigInteger, default=0)
    customer_carbon_captured: Mapped[int] = mapped_column(BigInteger, default=0)
    customer_coral_restored: Mapped[int] = mapped_column(BigInteger, default=0)
    customer_money_donated: Mapped[int] = mapped_column(BigInteger, default=0)


class ServerSecret(Base):
    """Secrets shared by every worker (e.g. the key that signs cursors)."""

    __tablename__ = "server_secrets"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))
