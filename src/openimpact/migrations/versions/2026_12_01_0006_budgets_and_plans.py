"""unit prices, monthly budget caps, plans with bonus impacts (issue 11)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 12:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _account_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["account_id"],
        ["accounts.id"],
        name=op.f(f"fk_{table}_account_id_accounts"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "impact_prices",
        sa.Column("impact_type", sa.String(length=20), nullable=False),
        sa.Column("unit_cents", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("impact_type", name=op.f("pk_impact_prices")),
    )
    op.create_table(
        "budgets",
        sa.Column("account_id", _ID, nullable=False),
        sa.Column("env", sa.String(length=10), nullable=False),
        sa.Column("monthly_cents", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        _account_fk("budgets"),
        sa.PrimaryKeyConstraint("account_id", "env", name=op.f("pk_budgets")),
    )
    op.create_table(
        "budget_months",
        sa.Column("account_id", _ID, nullable=False),
        sa.Column("env", sa.String(length=10), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("spent_cents", sa.BigInteger(), nullable=False),
        sa.Column("warned_ms", sa.BigInteger(), nullable=True),
        sa.Column("exceeded_ms", sa.BigInteger(), nullable=True),
        _account_fk("budget_months"),
        sa.PrimaryKeyConstraint("account_id", "env", "month", name=op.f("pk_budget_months")),
    )
    op.create_table(
        "plans",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("name_key", sa.String(length=80), nullable=False),
        sa.Column("bonuses", sa.JSON(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plans")),
        sa.UniqueConstraint("name_key", name=op.f("uq_plans_name_key")),
    )
    op.create_table(
        "plan_periods",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("account_id", _ID, nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("plan_id", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        _account_fk("plan_periods"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan_periods")),
        sa.UniqueConstraint("account_id", "period", name=op.f("uq_plan_periods_account_id_period")),
    )
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("plan_id", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("impacts") as batch:
        batch.add_column(sa.Column("cost_cents", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("impacts") as batch:
        batch.drop_column("cost_cents")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("plan_id")
    op.drop_table("plan_periods")
    op.drop_table("plans")
    op.drop_table("budget_months")
    op.drop_table("budgets")
    op.drop_table("impact_prices")
