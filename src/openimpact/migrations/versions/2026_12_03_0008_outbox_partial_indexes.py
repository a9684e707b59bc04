"""outbox indexes: the queue holds only what is still to send, the feeds only events (issue 10)

The queue index (delivered_ms, failed_ms, next_attempt_ms) held every row, so
the worker's claim of due events read through every due email (15,000 of
them after five seconds of a sale's checkouts with no SMTP server, 25 ms
under SQLite's write lock), and the feed indexes took an entry for every
email. Now: due messages by kind in a partial index, the purge's (kind,
delivered_ms), and the feeds' indexes for events only.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = "delivered_ms IS NULL AND failed_ms IS NULL"
TYPED = "event_type IS NOT NULL"


def upgrade() -> None:
    op.create_index(
        op.f("ix_outbox_kind_next_attempt_ms_id"),
        "outbox",
        ["kind", "next_attempt_ms", "id"],
        unique=False,
        sqlite_where=sa.text(PENDING),
        postgresql_where=sa.text(PENDING),
    )
    op.create_index(
        op.f("ix_outbox_kind_delivered_ms"), "outbox", ["kind", "delivered_ms"], unique=False
    )
    op.drop_index(op.f("ix_outbox_delivered_ms_failed_ms_next_attempt_ms"), table_name="outbox")
    op.create_index(
        op.f("ix_outbox_account_id_env_txid_id"),
        "outbox",
        ["account_id", "env", "txid", "id"],
        unique=False,
        sqlite_where=sa.text(TYPED),
        postgresql_where=sa.text(TYPED),
    )
    op.drop_index(op.f("ix_outbox_account_id_env_kind_txid_id"), table_name="outbox")
    op.drop_index(op.f("ix_outbox_account_id_env_event_type_txid_id"), table_name="outbox")
    op.create_index(
        op.f("ix_outbox_account_id_env_event_type_txid_id"),
        "outbox",
        ["account_id", "env", "event_type", "txid", "id"],
        unique=False,
        sqlite_where=sa.text(TYPED),
        postgresql_where=sa.text(TYPED),
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_outbox_account_id_env_event_type_txid_id"), table_name="outbox")
    op.create_index(
        op.f("ix_outbox_account_id_env_event_type_txid_id"),
        "outbox",
        ["account_id", "env", "event_type", "txid", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_outbox_account_id_env_kind_txid_id"),
        "outbox",
        ["account_id", "env", "kind", "txid", "id"],
        unique=False,
    )
    op.drop_index(op.f("ix_outbox_account_id_env_txid_id"), table_name="outbox")
    op.create_index(
        op.f("ix_outbox_delivered_ms_failed_ms_next_attempt_ms"),
        "outbox",
        ["delivered_ms", "failed_ms", "next_attempt_ms"],
        unique=False,
    )
    op.drop_index(op.f("ix_outbox_kind_delivered_ms"), table_name="outbox")
    op.drop_index(op.f("ix_outbox_kind_next_attempt_ms_id"), table_name="outbox")
