"""Settings, read once from the environment.

Every setting has the prefix ``OPENIMPACT_`` except the two that hosting
platforms conventionally provide unprefixed: ``DATABASE_URL`` and ``REDIS_URL``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour)s?\s*$", re.IGNORECASE)


def driver_url(url: str) -> str:
    """A user's ``postgres://`` or ``postgresql://`` URL with the driver
    SQLAlchemy should use (psycopg 3); other URLs as they are."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPENIMPACT_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "OPENIMPACT_DATABASE_URL"),
        description="SQLAlchemy URL; postgres://, postgresql:// or sqlite:///path",
    )
    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "OPENIMPACT_REDIS_URL"),
        description="Shared rate-limit storage for many workers",
    )
    data_dir: Path = Field(default=Path(".openimpact"), description="Where the SQLite file lives")
    rate_limit: str = Field(default="100/second", description="Per API key, e.g. 20/second, or off")
    public_rate_limit: str = Field(
        default="120/minute",
        description="Per client address on the public profile, widget, badges and customer "
        "pages, e.g. 600/minute, or off",
    )
    admin_token: str | None = Field(default=None, description="Operator token for /admin/v1")
    public_url: str | None = Field(
        default=None,
        description="Base URL used in certificate, profile and customer-page links (the "
        "request's own by default); emails carry links only when it is set",
    )
    max_body_bytes: int = Field(default=64 * 1024, description="Larger request bodies get 413")
    # The API promises that a retry within 24 hours is recognised.
    idempotency_ttl_hours: int = Field(
        default=48, ge=24, description="How long an Idempotency-Key is kept (at least 24 h)"
    )
    sandbox_stage_seconds: int = Field(
        default=120, description="Sandbox impacts advance one lifecycle stage this often"
    )
    background_worker: bool = Field(
        default=True,
        description="Run the worker (sandbox simulation, emails, cleanup) inside the server",
    )
    worker_interval_seconds: float = Field(
        default=5.0, gt=0, description="Pause between two worker passes"
    )
    writer_max_batch: int = Field(
        default=256, ge=1, le=2000, description="Most impact writes committed in one transaction"
    )
    writer_max_wait_ms: float | None = Field(
        default=None,
        ge=0,
        le=10,
        description="How long the first write of a batch waits for others to join it while "
        "writes keep coming (unset: 1)",
    )
    writer_in_flight: int = Field(
        default=1, ge=1, le=32, description="Batches a worker process writes at once"
    )
    events: bool = Field(
        default=True,
        description="Record events (the events feed and webhooks); false records none",
    )
    opentelemetry: bool = Field(
        default=False,
        description="FastAPI's OpenTelemetry traces, metrics and logs, for a server run with an "
        "OpenTelemetry SDK configured",
    )
    webhooks_allow_private: bool = Field(
        default=False,
        description="Let webhook URLs reach loopback and private addresses (local "
        "development and tests only)",
    )
    webhook_timeout_seconds: float = Field(
        default=15.0, gt=0, le=60, description="How long a webhook delivery may take"
    )
    webhook_concurrency: int = Field(
        default=100, ge=1, le=1000, description="Webhook deliveries a worker makes at once"
    )
    webhook_retry_scale: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Multiplies the webhook retry schedule (e.g. 0.001 in tests)",
    )
    webhook_lease_seconds: int = Field(
        default=300,
        ge=1,
        description="A worker that dies while delivering lets others retry after this long",
    )
    webhook_disable_after_hours: float = Field(
        default=120,
        gt=0,
        description="An endpoint failing every attempt this long is disabled (5 days)",
    )
    smtp_url: str | None = Field(
        default=None, description="smtp://user:pass@host:port for customer notifications"
    )
    mail_from: str = Field(default="impact@openimpact.local")
    session_idle_minutes: int = Field(
        default=720, ge=5, description="A dashboard session ends after this long without use"
    )
    session_max_hours: int = Field(
        default=168, ge=1, description="A dashboard session ends this long after sign-in"
    )
    signin_rate_limit: str = Field(
        default="10/15minutes",
        description="Dashboard sign-in and reset attempts per email (the IP gets five times this)",
    )
    log_level: str = Field(default="info")

    @model_validator(mode="after")
    def _check_webhook_lease(self) -> Settings:
        # A lease that ran out while its worker still sends would let another
        # worker send the same attempt.
        if self.webhook_lease_seconds < 2 * self.webhook_timeout_seconds:
            raise ValueError(
                "OPENIMPACT_WEBHOOK_LEASE_SECONDS must be at least twice "
                "OPENIMPACT_WEBHOOK_TIMEOUT_SECONDS"
            )
        return self

    @field_validator("admin_token")
    @classmethod
    def _check_admin_token(cls, value: str | None) -> str | None:
        # Account keys always carry these prefixes: a token that did could be
        # taken for one (by a person, a log scrubber or a secret scanner).
        if value and value.strip().startswith(("oi_test_", "oi_live_")):
            raise ValueError("OPENIMPACT_ADMIN_TOKEN must not look like an account key (oi_...)")
        return value

    @field_validator("rate_limit")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        if value.strip().lower() in {"off", "none", "0", "false"}:
            return "off"
        if not _RATE_RE.match(value):
            raise ValueError("OPENIMPACT_RATE_LIMIT must look like '100/second' or 'off'")
        return value.strip().lower()

    @field_validator("public_rate_limit")
    @classmethod
    def _check_public_rate(cls, value: str) -> str:
        if value.strip().lower() in {"off", "none", "0", "false"}:
            return "off"
        if not _RATE_RE.match(value):
            raise ValueError("OPENIMPACT_PUBLIC_RATE_LIMIT must look like '120/minute' or 'off'")
        return value.strip().lower()

    @property
    def sqlalchemy_url(self) -> str:
        """The URL with the driver SQLAlchemy should use (psycopg 3 for PostgreSQL)."""
        if not self.database_url:
            return f"sqlite:///{(self.data_dir / 'openimpact.db').resolve()}"
        return driver_url(self.database_url)

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
