from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from openimpact.db import Base, BigIntPK


class Schedule(Base):
    """An impact to create every month on ``day_of_month`` (UTC), from
    ``starts_on`` to ``ends_on`` (both YYYY-MM-DD, inclusive)."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    schedule_id: Mapped[str] = mapped_column(String(32), unique=True)  # public: S + 16 hex
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    env: Mapped[str] = mapped_column(String(10))
    impact_type: Mapped[str] = mapped_column(String(20))
    amount: Mapped[int] = mapped_column(BigInteger)
    category: Mapped[str | None] = mapped_column(String(40))
    customer_email: Mapped[str | None] = mapped_column(String(254))
    customer_name: Mapped[str | None] = mapped_column(String(200))
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    day_of_month: Mapped[int] = mapped_column(Integer)
    starts_on: Mapped[str] = mapped_column(String(10))
    ends_on: Mapped[str | None] = mapped_column(String(10))
    # Periods due before this day are never created: the start, or the day a
    # paused schedule was resumed (a pause skips its months).
    not_before: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10), default="active")  # active | paused
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    deleted_ms: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        Index(None, "account_id", "env", "id"),
        Index(None, "status", "deleted_ms"),
    )


class SchedulePeriod(Base):
    """One period of a schedule, written in the transaction that creates its
    impact: the unique (schedule, period) makes that happen exactly once."""

    __tablename__ = "schedule_periods"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    schedule_pk: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    period: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    created_ms: Mapped[int] = mapped_column(BigInteger)
    # The impact's time, or why none was created (a refusal is final too).
    time_ms: Mapped[int | None] = mapped_column(BigInteger)
    refused: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("schedule_pk", "period"),)
