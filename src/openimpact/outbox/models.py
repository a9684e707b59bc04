from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from openimpact.db import Base, BigIntPK


class OutboxMessage(Base):
    """A message to leave the system (email, webhook), written in the same
    transaction as the change it reports and delivered later by the worker."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20))  # "email" | "event"
    account_id: Mapped[int] = mapped_column(BigInteger)
    env: Mapped[str] = mapped_column(String(10))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    next_attempt_ms: Mapped[int] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    delivered_ms: Mapped[int | None] = mapped_column(BigInteger)
    failed_ms: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Events only: the public id (the ``webhook-id`` of every delivery), the
    # type, and for a ``ping`` the one endpoint it is for.
    event_id: Mapped[str | None] = mapped_column(String(40))
    event_type: Mapped[str | None] = mapped_column(String(40))
    endpoint_pk: Mapped[int | None] = mapped_column(BigInteger)
    # PostgreSQL only: the writing transaction's id (a column default set by
    # the migration). Ids are handed out before commit, so a row with a lower
    # id can become visible after one with a higher id; the feed pages by
    # (txid, id) and stops below the oldest transaction still running, where
    # nothing new can appear. SQLite commits one writer at a time, in id order.
    txid: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        Index(None, "delivered_ms", "failed_ms", "next_attempt_ms"),
        # The events feed, keyset by (txid, id), with and without a type.
        Index(None, "account_id", "env", "kind", "txid", "id"),
        Index(None, "account_id", "env", "event_type", "txid", "id"),
    )
