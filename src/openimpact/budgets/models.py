from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from openimpact.db import Base


class ImpactPrice(Base):
    """What one unit of an impact type costs, in US cents (operator-set)."""

    __tablename__ = "impact_prices"

    impact_type: Mapped[str] = mapped_column(String(20), primary_key=True)
    unit_cents: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class Budget(Base):
    """A monthly cap of an account and environment, in US cents."""

    __tablename__ = "budgets"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    env: Mapped[str] = mapped_column(String(10), primary_key=True)
    monthly_cents: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class BudgetMonth(Base):
    """What a month (UTC) spent, and when its owners were told it came close
    (80 %) and when it was reached; each is told once per month."""

    __tablename__ = "budget_months"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    env: Mapped[str] = mapped_column(String(10), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    spent_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    warned_ms: Mapped[int | None] = mapped_column(BigInteger)
    exceeded_ms: Mapped[int | None] = mapped_column(BigInteger)
