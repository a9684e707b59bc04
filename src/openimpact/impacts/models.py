from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from openimpact.db import Base, BigIntPK

STAGES = ("initiated", "donation_received", "transferred", "completed")


class Impact(Base):
    __tablename__ = "impacts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    env: Mapped[str] = mapped_column(String(10))
    time_ms: Mapped[int] = mapped_column(BigInteger)
    impact_type: Mapped[str] = mapped_column(String(20))
    amount: Mapped[int] = mapped_column(BigInteger)
    # "food" for food trees; the cause for donations (None when not given).
    category: Mapped[str | None] = mapped_column(String(40))
    # The cause a donation actually funds (the account's default when none given).
    cause: Mapped[str | None] = mapped_column(String(40))
    customer_pk: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    is_customer: Mapped[bool] = mapped_column(Boolean, default=False)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    notify: Mapped[bool] = mapped_column(Boolean, default=True)
    is_bonus: Mapped[bool] = mapped_column(Boolean, default=False)
    # Made by a monthly schedule (issue 11): its public id and the period
    # (YYYY-MM) the impact belongs to, which a late run creates after the fact.
    schedule_id: Mapped[str | None] = mapped_column(String(32))
    period: Mapped[str | None] = mapped_column(String(7))
    # What it cost against the monthly budget (issue 11), given back if it is
    # cancelled; None when it costs nothing (no price, a bonus impact).
    cost_cents: Mapped[int | None] = mapped_column(BigInteger)
    certificate_id: Mapped[str | None] = mapped_column(String(32), unique=True)

    stage: Mapped[str] = mapped_column(String(20), default="initiated")
    donation_available_ms: Mapped[int | None] = mapped_column(BigInteger)
    donation_sent_ms: Mapped[int | None] = mapped_column(BigInteger)
    completed_ms: Mapped[int | None] = mapped_column(BigInteger)
    project_id: Mapped[str | None] = mapped_column(String(80))
    partner_id: Mapped[str | None] = mapped_column(String(80))
    # Snapshot of the project at transfer, so later catalogue edits do not
    # rewrite history.
    assigned_agent: Mapped[str | None] = mapped_column(String(200))
    project_location: Mapped[str | None] = mapped_column(String(500))
    location_map: Mapped[str | None] = mapped_column(String(500))
    impact_video: Mapped[str | None] = mapped_column(String(500))
    live_session_ms: Mapped[int | None] = mapped_column(BigInteger)
    completion_notes: Mapped[str | None] = mapped_column(Text)

    cancelled_ms: Mapped[int | None] = mapped_column(BigInteger)
    cancellation_reason: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        UniqueConstraint("account_id", "env", "time_ms"),
        Index(None, "account_id", "env", "is_customer", "time_ms"),
        Index(None, "customer_pk", "time_ms"),
        Index(None, "stage", "env", "time_ms"),
    )


class DailyImpact(Base):
    __tablename__ = "daily_impacts"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    env: Mapped[str] = mapped_column(String(10), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, UTC
    tree_planted: Mapped[int] = mapped_column(BigInteger, default=0)
    waste_removed: Mapped[int] = mapped_column(BigInteger, default=0)
    carbon_captured: Mapped[int] = mapped_column(BigInteger, default=0)
    coral_restored: Mapped[int] = mapped_column(BigInteger, default=0)
    money_donated: Mapped[int] = mapped_column(BigInteger, default=0)


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    env: Mapped[str] = mapped_column(String(10))
    key: Mapped[str] = mapped_column(String(255))
    # SHA-256 of the endpoint and the canonical JSON body: a retry must match it.
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str] = mapped_column(Text)
    created_ms: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("account_id", "env", "key"),
        Index(None, "created_ms"),
    )
