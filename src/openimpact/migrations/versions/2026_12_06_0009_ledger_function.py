"""ledgers: a batch's ledger rows updated one by one by their key (PostgreSQL, issue 10)

The impact writer updated a batch's ledger rows with one UPDATE joined to the
batch's list (json_to_recordset, which the planner takes for 100 rows): it
hashed the list and scanned every ledger of the platform, on every batch and
under the ledger locks, whether analyzed or not (2,000 rows for 1,000
accounts). ``openimpact_add_to_ledgers`` updates each row of the list by its
primary key, in the list's order: one index seek per row whatever the
statistics, and the rows are locked in the order the writer sorts them, so
that two batches never deadlock (no separate locking statement).

For each row ``{account_id, env, n, now, <the ten totals>}`` of ``p_rows``
it adds the totals to the row and, when ``n`` > 0, moves ``last_ms`` to
``max(last_ms + n, now + n - 1)``: the batch's n milliseconds of that account
are then ``last_ms - n + 1 … last_ms``, after every earlier one (n = 0 gives
amounts back and leaves the clock). It returns each row's account, environment
and new ``last_ms``. SQLite's writer runs the same rule as one statement
(openimpact/sql.py, ``ledger_sqlite``). A later migration that adds a total
to ledgers replaces this function with one that adds it too (the
reliability suite writes every impact type and compares totals with the
records on both databases).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 21:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TOTALS = tuple(
    f"{who}_{kind}"
    for who in ("user", "customer")
    for kind in (
        "tree_planted",
        "waste_removed",
        "carbon_captured",
        "coral_restored",
        "money_donated",
    )
)

FUNCTION = f"""
CREATE FUNCTION openimpact_add_to_ledgers(p_rows json)
RETURNS TABLE (account_id bigint, env varchar, last_ms bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT * FROM json_to_recordset(p_rows)
            AS v(account_id bigint, env varchar, n bigint, now bigint,
                 {", ".join(f"{c} bigint" for c in TOTALS)})
    LOOP
        RETURN QUERY
        UPDATE ledgers AS l SET
            last_ms = CASE
                WHEN r.n = 0 THEN l.last_ms
                WHEN l.last_ms >= r.now THEN l.last_ms + r.n
                ELSE r.now + r.n - 1
            END,
            {", ".join(f"{c} = l.{c} + r.{c}" for c in TOTALS)}
        WHERE l.account_id = r.account_id AND l.env = r.env
        RETURNING l.account_id, l.env, l.last_ms;
    END LOOP;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION openimpact_add_to_ledgers(json)")
