"""webhook endpoints, their messages and attempts; events in the outbox (issue 12)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 14:57:54.516942
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("endpoint_id", sa.String(length=40), nullable=False),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("env", sa.String(length=10), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("event_types", sa.JSON(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=300), nullable=True),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("previous_secret", sa.String(length=100), nullable=True),
        sa.Column("previous_secret_until_ms", sa.BigInteger(), nullable=True),
        sa.Column("failing_since_ms", sa.BigInteger(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("deleted_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_webhook_endpoints_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
        sa.UniqueConstraint("endpoint_id", name=op.f("uq_webhook_endpoints_endpoint_id")),
    )
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_endpoints_account_id_env_id"),
            ["account_id", "env", "id"],
            unique=False,
        )

    op.create_table(
        "webhook_attempts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("delivery_id", sa.String(length=40), nullable=False),
        sa.Column(
            "endpoint_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("event_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("attempted_ms", sa.BigInteger(), nullable=False),
        sa.Column("trigger", sa.String(length=10), nullable=False),
        sa.Column("succeeded", sa.Boolean(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["endpoint_pk"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_attempts_endpoint_pk_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_pk"],
            ["outbox.id"],
            name=op.f("fk_webhook_attempts_event_pk_outbox"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
        sa.UniqueConstraint("delivery_id", name=op.f("uq_webhook_attempts_delivery_id")),
    )
    with op.batch_alter_table("webhook_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_attempts_attempted_ms"), ["attempted_ms"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_webhook_attempts_endpoint_pk_event_pk"),
            ["endpoint_pk", "event_pk"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_webhook_attempts_endpoint_pk_id"), ["endpoint_pk", "id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_webhook_attempts_event_pk"), ["event_pk"], unique=False
        )

    op.create_table(
        "webhook_messages",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "endpoint_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("event_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("next_attempt_ms", sa.BigInteger(), nullable=False),
        sa.Column("trigger", sa.String(length=10), nullable=False),
        sa.Column("lease_ms", sa.BigInteger(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_pk"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_messages_endpoint_pk_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_pk"],
            ["outbox.id"],
            name=op.f("fk_webhook_messages_event_pk_outbox"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_messages")),
        sa.UniqueConstraint(
            "endpoint_pk", "event_pk", name=op.f("uq_webhook_messages_endpoint_pk_event_pk")
        ),
    )
    with op.batch_alter_table("webhook_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_messages_event_pk"), ["event_pk"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_webhook_messages_status_next_attempt_ms"),
            ["status", "next_attempt_ms"],
            unique=False,
        )

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("event_type", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("endpoint_pk", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("txid", sa.BigInteger(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_outbox_account_id_env_event_type_txid_id"),
            ["account_id", "env", "event_type", "txid", "id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_outbox_account_id_env_kind_txid_id"),
            ["account_id", "env", "kind", "txid", "id"],
            unique=False,
        )

    if op.get_bind().dialect.name == "postgresql":
        # The writing transaction's id on every new row (the events feed pages
        # by it: outbox/models.py).
        op.execute(
            "ALTER TABLE outbox ALTER COLUMN txid SET DEFAULT (pg_current_xact_id()::text::bigint)"
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_account_id_env_kind_txid_id"))
        batch_op.drop_index(batch_op.f("ix_outbox_account_id_env_event_type_txid_id"))
        batch_op.drop_column("txid")
        batch_op.drop_column("endpoint_pk")
        batch_op.drop_column("event_type")
        batch_op.drop_column("event_id")

    with op.batch_alter_table("webhook_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_messages_status_next_attempt_ms"))
        batch_op.drop_index(batch_op.f("ix_webhook_messages_event_pk"))

    op.drop_table("webhook_messages")
    with op.batch_alter_table("webhook_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_attempts_event_pk"))
        batch_op.drop_index(batch_op.f("ix_webhook_attempts_endpoint_pk_id"))
        batch_op.drop_index(batch_op.f("ix_webhook_attempts_endpoint_pk_event_pk"))
        batch_op.drop_index(batch_op.f("ix_webhook_attempts_attempted_ms"))

    op.drop_table("webhook_attempts")
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_endpoints_account_id_env_id"))

    op.drop_table("webhook_endpoints")
