"""impact transitions: the append-only lifecycle log (issue 3)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 01:32:07.167264
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "impact_transitions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "impact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("from_stage", sa.String(length=20), nullable=False),
        sa.Column("to_stage", sa.String(length=20), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["impact_id"],
            ["impacts.id"],
            name=op.f("fk_impact_transitions_impact_id_impacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_impact_transitions")),
    )
    with op.batch_alter_table("impact_transitions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_impact_transitions_batch_id"), ["batch_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_impact_transitions_impact_id_id"), ["impact_id", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("impact_transitions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_impact_transitions_impact_id_id"))
        batch_op.drop_index(batch_op.f("ix_impact_transitions_batch_id"))

    op.drop_table("impact_transitions")
