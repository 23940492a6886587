"""The event runtime's inbox and outbox tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from alembic import op

from shared.migrations import create_runtime_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_runtime_tables(op)


def downgrade() -> None:
    op.execute("DROP TABLE outbox")
    op.execute("DROP TABLE inbox")
