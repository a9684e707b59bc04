from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from openimpact.db import Base, BigIntPK


class ImpactTransition(Base):
    """One stage change of one impact. Append-only: rows are inserted in the
    same transaction as the change they record and never updated, so the log is
    the audit trail behind every timestamp that track and certificates show."""

    __tablename__ = "impact_transitions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    impact_id: Mapped[int] = mapped_column(ForeignKey("impacts.id", ondelete="CASCADE"))
    # When the impact reached ``to_stage`` (the stage timestamp it was given).
    at_ms: Mapped[int] = mapped_column(BigInteger)
    # "admin-api", "cli:<os user>", "sandbox", "demo".
    actor: Mapped[str] = mapped_column(String(80))
    from_stage: Mapped[str] = mapped_column(String(20))
    to_stage: Mapped[str] = mapped_column(String(20))
    # All changes of one operator batch (or one sandbox pass) share an id.
    batch_id: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index(None, "impact_id", "id"),
        Index(None, "batch_id"),
    )
