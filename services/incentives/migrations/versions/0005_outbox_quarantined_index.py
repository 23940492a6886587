"""An index of the outbox's quarantined rows only: the relay counts them every few seconds
(gauge `qs_outbox_quarantined`) and `qingshou outbox list` reads them, without a scan of the
table (see shared.migrations.OUTBOX_QUARANTINED_INDEX). Built in the migration's transaction,
so other instances' outbox writes wait for one scan of the outbox (kept small by the relay).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from alembic import op

from shared.migrations import add_outbox_quarantined_index, drop_outbox_quarantined_index

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_outbox_quarantined_index(op)


def downgrade() -> None:
    drop_outbox_quarantined_index(op)
