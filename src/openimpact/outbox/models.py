from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from openimpact.db import Base, BigIntPK

# The predicates of the partial indexes below. A query uses such an index
# only when its own WHERE says as much: a claim names both columns IS NULL, a
# feed query names event_type (IS NOT NULL, or equal to a type).
PENDING = "delivered_ms IS NULL AND failed_ms IS NULL"
TYPED = "event_type IS NOT NULL"


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
        # What the worker claims: the due messages of a kind, soonest first.
        # Only what is still to be sent is in it: an event nobody listens to
        # is settled as it is written and never enters it, and an email
        # leaves it when sent or given up, so a backlog of one kind is never
        # read by the claims of the other.
        Index(
            None,
            "kind",
            "next_attempt_ms",
            "id",
            sqlite_where=text(PENDING),
            postgresql_where=text(PENDING),
        ),
        # The purge: events settled before the retention cutoff.
        Index(None, "kind", "delivered_ms"),
        # The events feed, keyset by (txid, id), with and without a type.
        # Events only (an email has no type): the impact writer's email rows
        # add nothing to them.
        Index(
            None,
            "account_id",
            "env",
            "txid",
            "id",
            sqlite_where=text(TYPED),
            postgresql_where=text(TYPED),
        ),
        Index(
            None,
            "account_id",
            "env",
            "event_type",
            "txid",
            "id",
            sqlite_where=text(TYPED),
            postgresql_where=text(TYPED),
        ),
    )
