"""Outbox rows the broker refuses for good are quarantined (failed_at, last_error).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from alembic import op

from shared.migrations import add_outbox_quarantine

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_outbox_quarantine(op)


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS outbox_pending")
    op.execute("CREATE INDEX outbox_pending ON outbox (shard, id) WHERE sent_at IS NULL")
    op.execute("ALTER TABLE outbox DROP COLUMN IF EXISTS last_error")
    op.execute("ALTER TABLE outbox DROP COLUMN IF EXISTS failed_at")
