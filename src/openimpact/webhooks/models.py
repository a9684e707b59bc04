from __future__ import annotations

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


class WebhookEndpoint(Base):
    """A URL of an account and environment that receives its events, signed
    with ``secret`` (and, for 24 hours after a rotation, ``previous_secret``)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[str] = mapped_column(String(40), unique=True)  # public: we_...
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    env: Mapped[str] = mapped_column(String(10))
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(500))
    # None: every event type.
    event_types: Mapped[list[str] | None] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(300))
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_until_ms: Mapped[int | None] = mapped_column(BigInteger)
    # The first failed attempt of the current run of failures (None after a success).
    failing_since_ms: Mapped[int | None] = mapped_column(BigInteger)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    deleted_ms: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index(None, "account_id", "env", "id"),)


class WebhookMessage(Base):
    """An event to send (again) to one endpoint: after a failed first attempt
    (its retries), a resend, a recovery or a test ``ping``."""

    __tablename__ = "webhook_messages"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    endpoint_pk: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_pk: Mapped[int] = mapped_column(ForeignKey("outbox.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(10))  # pending | delivered | failed
    # Attempts made on the current schedule (a resend starts it again).
    tries: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_ms: Mapped[int] = mapped_column(BigInteger)
    trigger: Mapped[str] = mapped_column(String(10))  # retry | resend | recover | test
    # Held by the worker sending it until then; None when no one is.
    lease_ms: Mapped[int | None] = mapped_column(BigInteger)
    # Bumped by a resend: the attempt in flight then does not overwrite it.
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("endpoint_pk", "event_pk"),
        Index(None, "status", "next_attempt_ms"),
        Index(None, "event_pk"),
    )


class WebhookAttempt(Base):
    """One HTTP request to an endpoint, as the delivery log shows it."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(String(40), unique=True)  # public: dlv_...
    endpoint_pk: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_pk: Mapped[int] = mapped_column(ForeignKey("outbox.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(40))
    attempted_ms: Mapped[int] = mapped_column(BigInteger)
    trigger: Mapped[str] = mapped_column(String(10))  # first | retry | resend | recover | test
    succeeded: Mapped[bool] = mapped_column(Boolean)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    response: Mapped[str | None] = mapped_column(Text)  # the answer's first bytes
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index(None, "endpoint_pk", "id"),
        Index(None, "endpoint_pk", "event_pk"),
        Index(None, "event_pk"),
        Index(None, "attempted_ms"),
    )
