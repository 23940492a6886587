"""Each service starts on real Kafka and PostgreSQL, reports ready, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from shared.db import make_engine
from shared.migrations import migrate
from tests.conftest import DB_URL, KAFKA, free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SERVICES = ["ingest", "staging", "notifier", "incentives"]


async def wait_ready(client: httpx.AsyncClient, url: str, proc, timeout: float = 60) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        assert proc.returncode is None, "service exited during start"
        try:
            r = await client.get(f"{url}/readyz")
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.3)
    raise AssertionError(f"{url} not ready in {timeout}s")


async def test_four_services_start_ready_and_stop_cleanly(uid):
    procs, urls = {}, {}
    for name in SERVICES:
        port = free_port()
        env = dict(os.environ, QS_PORT=str(port), QS_KAFKA_BOOTSTRAP=KAFKA,
                   QS_DATABASE_URL=DB_URL, QS_TOPIC_PREFIX=f"t{uid}",
                   QS_DB_SCHEMA=f"t_{uid}_{name}", QS_TOPIC_PARTITIONS="2")
        procs[name] = await asyncio.create_subprocess_exec(
            sys.executable, "-m", f"services.{name}", cwd=str(ROOT), env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        urls[name] = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            for name in SERVICES:
                body = await wait_ready(client, urls[name], procs[name])
                assert body["checks"]["kafka"] is True
                if name != "ingest":
                    assert body["checks"]["database"] is True
                    assert body["checks"]["consumer"] is True
                assert (await client.get(f"{urls[name]}/healthz")).json() == {"status": "ok"}
                metrics = (await client.get(f"{urls[name]}/metrics")).text
                assert "qs_events_consumed_total" in metrics
                assert (await client.get(f"{urls[name]}/openapi.json")).status_code == 200
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        codes = {n: await asyncio.wait_for(p.wait(), 40) for n, p in procs.items()}
        logs = {n: (await p.stderr.read()).decode() for n, p in procs.items()}
    # uvicorn finishes its graceful shutdown, then re-raises SIGTERM (exit status -15); the
    # service's own "service stopped" line proves the lifespan shutdown ran to its end
    assert set(codes.values()) <= {0, -signal.SIGTERM}, codes
    for name, log in logs.items():
        assert '"msg":"service stopped"' in log, (name, log[-2000:])


async def test_migrations_create_the_runtime_tables_once(uid):
    schema = f"t_{uid}_mig"
    location = ROOT / "services" / "staging" / "migrations"
    await asyncio.gather(migrate(DB_URL, schema, location), migrate(DB_URL, schema, location))
    await migrate(DB_URL, schema, location)  # idempotent
    engine = make_engine(DB_URL, schema)
    async with engine.connect() as conn:
        tables = set((await conn.execute(text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
            {"s": schema})).scalars())
    await engine.dispose()
    assert {"inbox", "outbox", "alembic_version"} <= tables


async def _stat_targets(schema: str, tables: list[str]) -> dict[str, set[int]]:
    """Each table's distinct column statistics targets (-1: the default)."""
    engine = make_engine(DB_URL, schema)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT c.relname, coalesce(a.attstattarget, -1) FROM pg_attribute a "
                "JOIN pg_class c ON c.oid = a.attrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :s AND c.relname = ANY(:t) AND a.attnum > 0 "
                "AND NOT a.attisdropped"), {"s": schema, "t": tables})).all()
    finally:
        await engine.dispose()
    found: dict[str, set[int]] = {}
    for table, target in rows:
        found.setdefault(table, set()).add(target)
    return found


async def test_queues_and_logs_get_small_analyze_samples_and_state_tables_keep_theirs(uid):
    from alembic import command

    from shared.migrations import LEAN_STATISTICS_TARGET, alembic_config

    schema = f"t_{uid}_stats"
    location = ROOT / "services" / "notifier" / "migrations"
    lean = ["inbox", "outbox", "contacts", "deferred_contacts", "dispatch_queue"]
    await migrate(DB_URL, schema, location, "0003")
    assert set().union(*(await _stat_targets(schema, lean)).values()) == {-1}
    await migrate(DB_URL, schema, location)
    targets = await _stat_targets(schema, [*lean, "borrowers", "loans"])
    assert {t: targets[t] for t in lean} == {t: {LEAN_STATISTICS_TARGET} for t in lean}
    assert targets["borrowers"] == targets["loans"] == {-1}  # state tables: planner's full view
    engine = make_engine(DB_URL, schema, pool_size=1)
    async with engine.connect() as conn:  # the quarantined rows' own index (0005)
        indexes = set((await conn.execute(text(
            "SELECT indexname FROM pg_indexes WHERE schemaname = :s AND tablename = 'outbox'"),
            {"s": schema})).scalars())
    await engine.dispose()
    assert {"outbox_pending", "outbox_quarantined"} <= indexes

    engine = make_engine(DB_URL, schema, pool_size=1)
    try:
        async with engine.begin() as conn:
            def down(sync_conn) -> None:  # type: ignore[no-untyped-def]
                cfg = alembic_config(location, schema)
                cfg.attributes["connection"] = sync_conn
                command.downgrade(cfg, "0003")
            await conn.run_sync(down)
        assert set().union(*(await _stat_targets(schema, lean)).values()) == {-1}
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()
