"""SIGKILL between the database commit and the offset commit: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from shared.probe import create_probe_schema
from tests.conftest import DB_URL, KAFKA
from tests.integration.conftest import drop_scratch, eventually
from tests.integration.helpers import produce_repayments

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).with_name("crash_consumer.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
async def _drop_scratch(uid: str) -> AsyncIterator[None]:
    """This test leaves no schema or topic behind."""
    yield
    await drop_scratch(uid)


async def spawn(schema: str, prefix: str, mode: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), KAFKA, DB_URL, schema, prefix, mode, cwd=str(ROOT))


async def test_sigkill_between_db_commit_and_offset_commit(engine, schema, topics, producer):
    await create_probe_schema(engine, schema)
    total = 400
    await produce_repayments(producer, topics.loan_events, total, loans=8)

    crashing = await spawn(schema, topics.prefix, "crash")
    assert await asyncio.wait_for(crashing.wait(), 60) == -signal.SIGKILL

    async def counts() -> tuple[int, int]:
        async with engine.connect() as conn:
            applied = (await conn.execute(text(
                "SELECT coalesce(sum(events), 0) FROM probe_loans"))).scalar_one()
            inbox = (await conn.execute(text("SELECT count(*) FROM inbox"))).scalar_one()
        return int(applied), int(inbox)

    applied_before, _ = await counts()
    assert applied_before > 0  # at least the batch whose offset commit never happened

    survivor = await spawn(schema, topics.prefix, "normal")

    async def done() -> bool:
        return (await counts())[0] >= total

    await eventually(done, timeout=60)
    await asyncio.sleep(1.0)  # time for a wrong second application to show
    survivor.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(survivor.wait(), 30) == 0
    assert await counts() == (total, total)
    async with engine.connect() as conn:
        per_loan = dict((await conn.execute(text(
            "SELECT loan_id, events FROM probe_loans"))).all())
        outbox = (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one()
    assert per_loan == {f"L{i}": total // 8 for i in range(8)}
    assert outbox == total
