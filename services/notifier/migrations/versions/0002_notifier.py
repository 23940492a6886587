"""The notifier's state: borrowers, loans, promises, calendar, policy, templates, the contact
log (append-only), the deferred queue and the dispatch queue.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = """
CREATE TABLE borrowers (
    borrower_id        text PRIMARY KEY,
    name               text NOT NULL,
    phone              text,
    email              text,
    timezone           text NOT NULL,
    language           text NOT NULL,
    opted_out_channels text[] NOT NULL DEFAULT '{}',
    vulnerable         boolean NOT NULL DEFAULT false,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE loans (
    loan_id          text PRIMARY KEY,
    borrower_id      text,
    stage            text NOT NULL DEFAULT 'current',
    closed           boolean NOT NULL DEFAULT false,
    flags            text[] NOT NULL DEFAULT '{}',
    owner_id         text,
    stage_entered_on date,
    dpd              int NOT NULL DEFAULT 0,
    arrears          numeric(18, 4) NOT NULL DEFAULT 0,
    currency         text,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX loans_open_stage ON loans (stage) WHERE NOT closed;
CREATE TABLE promises (
    promise_id   text PRIMARY KEY,
    loan_id      text NOT NULL,
    collector_id text NOT NULL,
    amount       numeric(18, 4) NOT NULL,
    due_on       date NOT NULL,
    status       text NOT NULL DEFAULT 'open',
    reminded     boolean NOT NULL DEFAULT false
);
CREATE INDEX promises_open_due ON promises (due_on) WHERE status = 'open' AND NOT reminded;
CREATE TABLE calendar (
    id            smallint PRIMARY KEY CHECK (id = 1),
    business_date date,
    sim_now       timestamptz
);
INSERT INTO calendar (id) VALUES (1);
CREATE TABLE calendar_closed (
    business_date date PRIMARY KEY,
    closed_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE contact_policies (
    version    int PRIMARY KEY,
    document   jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE template_overrides (
    template_id text PRIMARY KEY,
    source      text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE contacts (
    id            bigserial PRIMARY KEY,
    contact_id    text NOT NULL,
    loan_id       text NOT NULL,
    borrower_id   text NOT NULL,
    channel       text NOT NULL,
    template      text NOT NULL,
    stage         text NOT NULL,
    trigger       text NOT NULL,
    status        text NOT NULL,
    reason        text NOT NULL,
    scheduled_for timestamptz,
    decided_at    timestamptz NOT NULL,
    attempt       jsonb,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX contacts_by_loan ON contacts (loan_id, id);
CREATE INDEX contacts_by_contact ON contacts (contact_id, id);
CREATE INDEX contacts_by_age ON contacts (recorded_at);
CREATE TABLE deferred_contacts (
    contact_id text PRIMARY KEY,
    due_at     timestamptz NOT NULL,
    request    jsonb NOT NULL
);
CREATE INDEX deferred_due ON deferred_contacts (due_at);
CREATE TABLE dispatch_queue (
    contact_id      text PRIMARY KEY,
    channel         text NOT NULL,
    template_id     text NOT NULL,
    request         jsonb NOT NULL,
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dispatch_due ON dispatch_queue (next_attempt_at);
"""


def upgrade() -> None:
    for statement in TABLES.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    for table in ("dispatch_queue", "deferred_contacts", "contacts", "template_overrides",
                  "contact_policies", "calendar_closed", "calendar", "promises", "loans",
                  "borrowers"):
        op.execute(f"DROP TABLE {table}")
