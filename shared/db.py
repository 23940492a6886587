"""PostgreSQL access: one async SQLAlchemy engine per service, bound to the service's schema.

Services share one database and never each other's tables: each owns a schema and its engine
sets ``search_path`` to it, so SQL inside a service names tables without a schema.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_identifier(name: str) -> str:
    """Refuse anything but a plain lower-case SQL identifier (schema names come from config)."""
    if not _IDENT.match(name):
        raise ValueError(f"not a valid schema name: {name!r}")
    return name


def make_engine(url: str, schema: str, pool_size: int = 5, *,
                settings: dict[str, str] | None = None) -> AsyncEngine:
    """An asyncpg engine whose connections use ``schema`` (then ``public``) by default;
    ``settings`` are more PostgreSQL settings for its sessions."""
    check_identifier(schema)
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={"server_settings": {"search_path": f"{schema},public",
                                          "application_name": f"qingshou-{schema}",
                                          **(settings or {})}},
    )


async def drop_schema(engine: AsyncEngine, schema: str) -> None:
    """Drop a scratch schema and everything in it (benchmarks and the chaos run clean up)."""
    check_identifier(schema)
    async with engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


class KeptConnection:
    """One connection held across the many short transactions of a loop (a consumer's
    batches, a relay's cycles, a poller's ticks).

    Checking a connection out of the pool for each transaction costs the pool's ping, which
    SQLAlchemy's asyncpg dialect makes three round trips (BEGIN, an empty query, ROLLBACK);
    on two busy cores each round trip waits for the backend to get a core. A kept connection
    is not pinged: if PostgreSQL went away, its first statement fails with a transient error
    that the loop retries, and :meth:`begin` has already given the connection back to the
    pool (which rolls it back, pings or replaces it on the next checkout).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._conn: AsyncConnection | None = None

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A transaction on the kept connection (checked out on first use or after a
        failure); committed on exit, rolled back and the connection let go on any error."""
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            conn = self._conn = await self.engine.connect()
        try:
            async with conn.begin():
                yield conn
        except BaseException:
            self._conn = None
            with contextlib.suppress(Exception):
                await conn.close()
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    """Raise unless the database answers a trivial query."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def ensure_schema(engine: AsyncEngine, schema: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{check_identifier(schema)}"'))


# The FROM item that reads rows_json's parameter back, in order: ``FROM {JSON_ROWS}``, then
# ``r->>0``, ``CAST(r->>1 AS date)``... and ``ORDER BY n`` where the order of the rows matters.
JSON_ROWS = "jsonb_array_elements(CAST(:rows AS jsonb)) WITH ORDINALITY AS u(r, n)"


def rows_json(rows: Iterable[Sequence[Any]]) -> str:
    """Rows of a multi-row statement as one JSON array of arrays, the statement's one parameter.

    Read back in SQL by position (``FROM {JSON_ROWS}``, see above) with ``r->>0``,
    ``CAST(r->>1 AS timestamptz)``... orjson writes the whole batch in one call, where a typed
    array per column costs the driver an encoding step per element (a fifth of staging's end
    of day, a third of the notifier's writes). Decimals travel as their exact string
    (``default=str``), datetimes as RFC 3339, nested dicts as JSON objects.
    """
    return orjson.dumps(list(rows), default=str).decode()
