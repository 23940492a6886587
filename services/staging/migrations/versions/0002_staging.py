"""Staging tables: loans (one JSON document each), stage history, roster, policy, calendar.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import json

from alembic import op

from services.staging.domain.policy import DEFAULT_POLICY_DOCUMENT

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = """
CREATE TABLE loans (
    loan_id              text          PRIMARY KEY,
    product              text          NOT NULL,
    status               text          NOT NULL,
    stage                text          NOT NULL,
    dpd                  int           NOT NULL,
    arrears              numeric(20,4) NOT NULL,
    currency             text          NOT NULL,
    collector_id         text,
    team                 text,
    next_transition_date date,
    business_date        date          NOT NULL,
    state                jsonb         NOT NULL,
    updated_at           timestamptz   NOT NULL DEFAULT now()
);
CREATE INDEX loans_next_transition ON loans (next_transition_date)
    WHERE next_transition_date IS NOT NULL;
CREATE INDEX loans_stage ON loans (stage, loan_id);
CREATE INDEX loans_collector ON loans (collector_id, loan_id) WHERE collector_id IS NOT NULL;
CREATE TABLE stage_history (
    id            bigserial   PRIMARY KEY,
    loan_id       text        NOT NULL,
    product       text        NOT NULL,
    from_stage    text        NOT NULL,
    to_stage      text        NOT NULL,
    dpd           int         NOT NULL,
    reason        text        NOT NULL,
    business_date date        NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stage_history_loan ON stage_history (loan_id, id);
CREATE TABLE collectors (
    collector_id text        PRIMARY KEY,
    name         text        NOT NULL,
    team         text        NOT NULL,
    capacity     int         NOT NULL,
    active       boolean     NOT NULL,
    open_cases   int         NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE policy_versions (
    version    int         PRIMARY KEY,
    doc        jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE calendar (
    id            int  PRIMARY KEY CHECK (id = 1),
    business_date date,
    eod_pending   date
);
CREATE TABLE eod_runs (
    business_date date        PRIMARY KEY,
    history_upto  bigint      NOT NULL,
    aged          int         NOT NULL,
    completed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE portfolio_snapshots (
    business_date date          NOT NULL,
    product       text          NOT NULL,
    stage         text          NOT NULL,
    loans         int           NOT NULL,
    arrears       numeric(20,4) NOT NULL,
    PRIMARY KEY (business_date, product, stage)
);
INSERT INTO calendar (id, business_date, eod_pending) VALUES (1, NULL, NULL)
"""


def upgrade() -> None:
    for statement in TABLES.split(";"):
        if statement.strip():
            op.execute(statement)
    doc = json.dumps(DEFAULT_POLICY_DOCUMENT).replace("'", "''")
    op.execute(f"INSERT INTO policy_versions (version, doc) "
               f"VALUES ({DEFAULT_POLICY_DOCUMENT['version']}, '{doc}'::jsonb)")


def downgrade() -> None:
    for table in ("portfolio_snapshots", "eod_runs", "calendar", "policy_versions",
                  "collectors", "stage_history", "loans"):
        op.execute(f"DROP TABLE {table}")
