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


# The quarantined rows (failed_at set) are few: an index of only them makes counting them for
# the relay's gauge and listing them for an operator (shared.ops.outbox) cheap, and costs the
# usual insert nothing (its predicate is false for every new row).
OUTBOX_QUARANTINED_INDEX = (
    "CREATE INDEX IF NOT EXISTS outbox_quarantined ON outbox (id) WHERE failed_at IS NOT NULL")


def add_outbox_quarantined_index(op) -> None:  # type: ignore[no-untyped-def]
    op.execute(OUTBOX_QUARANTINED_INDEX)


def drop_outbox_quarantined_index(op) -> None:  # type: ignore[no-untyped-def]
    """The downgrade of :func:`add_outbox_quarantined_index`."""
    op.execute("DROP INDEX IF EXISTS outbox_quarantined")


# The sample ANALYZE reads is 300 rows per point of the largest statistics target among a
# table's columns (default 100: 30,000 rows), and for a queue or a log whose every query is an
# index lookup the statistics it buys change no plan. On the dev stack ANALYZE of the
# notifier's deferred contacts took 0.65 s of a core (unique jsonb requests sorted), its contact
# log 0.50 s, an inbox 0.30 s; at target 10: 0.04-0.06 s each. Autoanalyze runs that often on
# tables growing by tens of thousands of rows a minute, and each run took a core from the
# consumers for a second or two: the stack's worst latencies came in those seconds.
LEAN_STATISTICS_TARGET = 10


def lean_statistics_sql(table: str, target: int = LEAN_STATISTICS_TARGET) -> str:
    """SQL that sets the statistics target of every column ``table`` has now (a column added
    later gets the default again: call this again in that migration). ``-1``: the default."""
    check_identifier(table)
    return f"""
DO $$
DECLARE col record;
BEGIN
    FOR col IN SELECT attname FROM pg_attribute
               WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped LOOP
        EXECUTE format('ALTER TABLE {table} ALTER COLUMN %I SET STATISTICS {int(target)}',
                       col.attname);
    END LOOP;
END $$"""


def runtime_statistics_sql(*tables: str, target: int = LEAN_STATISTICS_TARGET) -> list[str]:
    """:func:`lean_statistics_sql` for the inbox and outbox (every query on them is an index
    lookup) and for ``tables``, a service's own queues and logs of that kind."""
    return [lean_statistics_sql(table, target) for table in ("inbox", "outbox", *tables)]


def set_runtime_statistics(op, *tables: str,  # type: ignore[no-untyped-def]
                           target: int = LEAN_STATISTICS_TARGET) -> None:
    """Apply :func:`runtime_statistics_sql` in a migration (``target=-1`` to downgrade)."""
    for statement in runtime_statistics_sql(*tables, target=target):
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
