"""public profiles, customer page links and two partial indexes on impacts (issue 9)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 08:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "public_profiles",
        sa.Column("account_id", _ID, nullable=False),
        sa.Column("slug", sa.String(length=40), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("logo_url", sa.String(length=500), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_public_profiles_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_public_profiles")),
        sa.UniqueConstraint("slug", name=op.f("uq_public_profiles_slug")),
    )
    op.create_table(
        "customer_pages",
        sa.Column("customer_pk", _ID, nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_pk"],
            ["customers.id"],
            name=op.f("fk_customer_pages_customer_pk_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_pk", name=op.f("pk_customer_pages")),
        sa.UniqueConstraint("token", name=op.f("uq_customer_pages_token")),
    )
    with op.batch_alter_table("impacts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_impacts_account_id_env_project_id"),
            ["account_id", "env", "project_id"],
            unique=False,
            sqlite_where=sa.text("project_id IS NOT NULL"),
            postgresql_where=sa.text("project_id IS NOT NULL"),
        )
        batch_op.create_index(
            batch_op.f("ix_impacts_account_id_env_completed_ms"),
            ["account_id", "env", "completed_ms"],
            unique=False,
            sqlite_where=sa.text("completed_ms IS NOT NULL"),
            postgresql_where=sa.text("completed_ms IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("impacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_impacts_account_id_env_completed_ms"))
        batch_op.drop_index(batch_op.f("ix_impacts_account_id_env_project_id"))
    op.drop_table("customer_pages")
    op.drop_table("public_profiles")
