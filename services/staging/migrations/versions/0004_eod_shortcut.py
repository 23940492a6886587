"""End of day at scale: exact arrears, the oldest unpaid due date, portfolio counts kept as moves.

- ``loans.arrears`` becomes an unconstrained NUMERIC: it keeps the ledger's exact amount
  ("500.00", not NUMERIC(20,4)'s "500.0000"), so end of day can publish it from the column.
  Dropping the type modifier of a NUMERIC rewrites nothing.
- ``loans.oldest_due_date``: the ledger's oldest unpaid due date, written with every save.
  Rows saved before this migration have none (and four-decimal arrears): end of day takes
  its general path for them once, which rewrites both.
- ``portfolio_moves``: open loans and arrears per product and stage as a sum of moves, one row
  per product and stage touched by a transaction, appended in the transaction that changes the
  loans (no row is ever updated, so writers never wait for each other). The end of day adds
  them up for its snapshot and folds them into one row per product and stage. Seeded here
  from the loans.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE loans ALTER COLUMN arrears TYPE numeric;
ALTER TABLE loans ADD COLUMN oldest_due_date date;
CREATE TABLE portfolio_moves (
    id      bigserial PRIMARY KEY,
    product text      NOT NULL,
    stage   text      NOT NULL,
    loans   bigint    NOT NULL,
    arrears numeric   NOT NULL
);
INSERT INTO portfolio_moves (product, stage, loans, arrears)
SELECT product, stage, count(*), sum(arrears) FROM loans WHERE status = 'open'
GROUP BY product, stage
"""


def upgrade() -> None:
    for statement in UPGRADE.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE portfolio_moves")
    op.execute("ALTER TABLE loans DROP COLUMN oldest_due_date")
    op.execute("ALTER TABLE loans ALTER COLUMN arrears TYPE numeric(20,4)")
