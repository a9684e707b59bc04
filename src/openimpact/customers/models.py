from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from openimpact.db import Base, BigIntPK


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(32), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    env: Mapped[str] = mapped_column(String(10))
    email: Mapped[str] = mapped_column(String(254))
    # Lower-cased email: one customer per address, whatever its case.
    email_key: Mapped[str] = mapped_column(String(254))
    name: Mapped[str | None] = mapped_column(String(200))
    onboarded_ms: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("account_id", "env", "email_key"),
        Index(None, "account_id", "env", "onboarded_ms", "id"),
    )
