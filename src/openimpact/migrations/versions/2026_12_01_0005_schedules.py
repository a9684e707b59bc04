"""monthly schedules and where an impact came from (issue 11)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("schedule_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", _ID, nullable=False),
        sa.Column("env", sa.String(length=10), nullable=False),
        sa.Column("impact_type", sa.String(length=20), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=True),
        sa.Column("customer_email", sa.String(length=254), nullable=True),
        sa.Column("customer_name", sa.String(length=200), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("day_of_month", sa.Integer(), nullable=False),
        sa.Column("starts_on", sa.String(length=10), nullable=False),
        sa.Column("ends_on", sa.String(length=10), nullable=True),
        sa.Column("not_before", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("deleted_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_schedules_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        sa.UniqueConstraint("schedule_id", name=op.f("uq_schedules_schedule_id")),
    )
    op.create_index(
        op.f("ix_schedules_account_id_env_id"), "schedules", ["account_id", "env", "id"]
    )
    op.create_index(op.f("ix_schedules_status_deleted_ms"), "schedules", ["status", "deleted_ms"])
    op.create_table(
        "schedule_periods",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("schedule_pk", _ID, nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("time_ms", sa.BigInteger(), nullable=True),
        sa.Column("refused", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["schedule_pk"],
            ["schedules.id"],
            name=op.f("fk_schedule_periods_schedule_pk_schedules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_periods")),
        sa.UniqueConstraint(
            "schedule_pk", "period", name=op.f("uq_schedule_periods_schedule_pk_period")
        ),
    )
    with op.batch_alter_table("impacts") as batch:
        batch.add_column(sa.Column("schedule_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("period", sa.String(length=7), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("impacts") as batch:
        batch.drop_column("period")
        batch.drop_column("schedule_id")
    op.drop_table("schedule_periods")
    op.drop_index(op.f("ix_schedules_status_deleted_ms"), table_name="schedules")
    op.drop_index(op.f("ix_schedules_account_id_env_id"), table_name="schedules")
    op.drop_table("schedules")
