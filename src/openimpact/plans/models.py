from __future__ import annotations

from sqlalchemy import JSON, BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from openimpact.db import Base, BigIntPK


class Plan(Base):
    """A plan and the bonus impacts it grants each month: {"tree_planted": 50}."""

    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(80))
    name_key: Mapped[str] = mapped_column(String(80), unique=True)  # lower-cased
    bonuses: Mapped[dict[str, int]] = mapped_column(JSON)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class PlanPeriod(Base):
    """A month's bonus of an account, written with its impacts: exactly once."""

    __tablename__ = "plan_periods"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    period: Mapped[str] = mapped_column(String(7))
    plan_id: Mapped[int] = mapped_column(BigInteger)
    created_ms: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (UniqueConstraint("account_id", "period"),)
