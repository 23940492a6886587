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
