"""Incentives tables: the append-only credit ledger and what the rules need to produce it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import json

from alembic import op

from services.incentives.domain import DEFAULT_SCHEME, scheme_to_doc

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = """
CREATE TABLE credit_ledger (
    entry_id      uuid          PRIMARY KEY,
    kind          text          NOT NULL,
    collector_id  text          NOT NULL,
    period        text          NOT NULL,
    loan_id       text          NOT NULL,
    on_date       date          NOT NULL,
    amount        numeric(20,4) NOT NULL,
    currency      text,
    stage         text,
    team          text,
    severity      text,
    days_to_cure  int,
    event_source  text          NOT NULL,
    event_id      text          NOT NULL,
    recorded_at   timestamptz   NOT NULL DEFAULT now()
);
CREATE INDEX credit_ledger_scorecard ON credit_ledger (period, collector_id);
CREATE TABLE assignments (
    loan_id      text PRIMARY KEY,
    collector_id text NOT NULL,
    team         text,
    stage        text,
    assigned_on  date NOT NULL,
    ended_on     date
);
CREATE TABLE loan_state (
    loan_id            text PRIMARY KEY,
    arrears            numeric(20,4),
    currency           text,
    last_cure_entry_id uuid
);
CREATE TABLE collectors (
    collector_id text PRIMARY KEY,
    team         text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE closed_periods (
    period    text PRIMARY KEY,
    closed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE scheme_versions (
    version        int         PRIMARY KEY,
    effective_from date        NOT NULL,
    doc            jsonb       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE scorecards (
    collector_id text        NOT NULL,
    period       text        NOT NULL,
    team         text,
    currency     text        NOT NULL,
    doc          jsonb       NOT NULL,
    tally        jsonb       NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collector_id, period)
);
CREATE INDEX scorecards_period_team ON scorecards (period, team)
"""


def upgrade() -> None:
    for statement in TABLES.split(";"):
        if statement.strip():
            op.execute(statement)
    doc = json.dumps(scheme_to_doc(DEFAULT_SCHEME)).replace("'", "''")
    op.execute(
        "INSERT INTO scheme_versions (version, effective_from, doc) "
        f"VALUES ({DEFAULT_SCHEME.version}, '{DEFAULT_SCHEME.effective_from.isoformat()}', "
        f"'{doc}'::jsonb)"
    )


def downgrade() -> None:
    for table in ("scorecards", "scheme_versions", "closed_periods", "collectors", "loan_state",
                  "assignments", "credit_ledger"):
        op.execute(f"DROP TABLE {table}")
