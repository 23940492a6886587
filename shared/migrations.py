"""Alembic migrations per service, each into its own schema.

Every service keeps its migrations in ``services/<name>/migrations`` (an Alembic script folder
whose ``env.py`` calls :func:`run_env`). :func:`migrate` upgrades a schema to head under an
advisory lock, so several instances starting together migrate once. The engine's
``search_path`` puts the service schema first, so migrations create unqualified tables there.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from shared.db import check_identifier, make_engine

RUNTIME_TABLES = """
CREATE TABLE inbox (
    consumer        text        NOT NULL,
    source          text        NOT NULL,
    id              text        NOT NULL,
    status          text        NOT NULL DEFAULT 'applied',
    topic           text        NOT NULL,
    kafka_partition int         NOT NULL,
    kafka_offset    bigint      NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, source, id)
);
CREATE TABLE outbox (
    id         bigserial   PRIMARY KEY,
    shard      smallint    NOT NULL,
    topic      text        NOT NULL,
    key        bytea,
    value      bytea       NOT NULL,
    headers    jsonb       NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz,
    failed_at  timestamptz,
    last_error text
);
CREATE INDEX outbox_pending ON outbox (shard, id) WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;
"""


def create_runtime_tables(op) -> None:  # type: ignore[no-untyped-def]
    """The inbox and outbox every consuming service needs (call from its first migration)."""
    for statement in RUNTIME_TABLES.split(";"):
        if statement.strip():
            op.execute(statement)


OUTBOX_QUARANTINE = """
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS failed_at timestamptz;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS last_error text;
DROP INDEX IF EXISTS outbox_pending;
CREATE INDEX outbox_pending ON outbox (shard, id) WHERE sent_at IS NULL AND failed_at IS NULL;
"""


def add_outbox_quarantine(op) -> None:  # type: ignore[no-untyped-def]
    """Outbox rows the broker refuses for good (too large...) are set aside, not retried."""
    for statement in OUTBOX_QUARANTINE.split(";"):
        if statement.strip():
            op.execute(statement)


def run_env() -> None:
    """Body of every service's ``migrations/env.py``."""
    from alembic import context

    conn = context.config.attributes["connection"]
    schema = context.config.attributes["schema"]
    context.configure(connection=conn, version_table_schema=schema, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


def alembic_config(script_location: Path, schema: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["schema"] = schema
    return cfg


async def migrate(url: str, schema: str, script_location: Path, revision: str = "head") -> None:
    """Upgrade ``schema`` to ``revision`` with the migrations in ``script_location``."""
    check_identifier(schema)
    engine = make_engine(url, schema, pool_size=1)
    try:
        async with engine.begin() as conn:
            # the lock comes first: two instances starting together must not race even on
            # CREATE SCHEMA IF NOT EXISTS (it is not safe against a concurrent create)
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                               {"k": zlib.crc32(f"migrate:{schema}".encode())})
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))

            def upgrade(sync_conn) -> None:  # type: ignore[no-untyped-def]
                cfg = alembic_config(script_location, schema)
                cfg.attributes["connection"] = sync_conn
                command.upgrade(cfg, revision)

            await conn.run_sync(upgrade)
    finally:
        await engine.dispose()
