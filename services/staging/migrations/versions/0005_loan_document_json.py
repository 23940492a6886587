"""The loan document is stored as ``json`` (its text), not ``jsonb``.

Staging never queries inside the document: it reads it whole into the domain and writes it
whole (or, at end of day, as a patched copy made in Python). ``jsonb`` made every read
re-serialise it and every write parse it into binary form (about 10 and 17 microseconds per
loan, the largest database cost of end of day after the writes themselves) and stored it
about a quarter larger than the compact text. ``json`` keeps the text as written, checks it
is JSON, and gives it back as is. Rewrites the table once.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE loans ALTER COLUMN state TYPE json USING state::json")


def downgrade() -> None:
    op.execute("ALTER TABLE loans ALTER COLUMN state TYPE jsonb USING state::jsonb")
