"""Small ANALYZE samples for the tables every query reads by index: the inbox and the outbox.

Autoanalyze of them, with the default sample of 30,000 rows, took a core for a second or two
every few minutes under load, and the stack's worst latencies came in those seconds; their
plans never depended on the statistics it bought (see shared.migrations.LEAN_STATISTICS_TARGET).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from alembic import op

from shared.migrations import set_runtime_statistics

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    set_runtime_statistics(op)


def downgrade() -> None:
    set_runtime_statistics(op, target=-1)
