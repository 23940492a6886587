"""Quarantined outbox rows for an operator: the relay's gauge counts them, ``qingshou outbox
list`` shows them, ``qingshou outbox retry`` hands chosen ones back to the relay, which then
publishes them (real PostgreSQL and Kafka)."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from shared import cli, outbox
from shared.ops.outbox import list_quarantined, retry_quarantined
from shared.probe import create_probe_schema
from shared.relay import OutboxRelay
from tests.conftest import DB_URL
from tests.integration.conftest import drop_scratch, read_topic

pytestmark = pytest.mark.integration

runner = CliRunner()


@pytest.fixture(autouse=True)
async def _cleanup(uid):
    yield
    await drop_scratch(uid)


async def test_a_refused_row_is_counted_listed_and_sent_again_once_mended(
        engine, schema, topics, producer):
    await create_probe_schema(engine, schema)
    topic = topics.name("repayments-applied")
    huge = b"x" * (2 * 1024 * 1024)  # over the producer's 1 MB request limit: refused for good
    async with engine.begin() as conn:
        await outbox.write(conn, [outbox.OutboxMessage(topic, b"K1", b'{"n": 1}'),
                                  outbox.OutboxMessage(topic, b"K2", huge)], 4, schema)
    relay = OutboxRelay(engine, producer, schema, shards=4, poll_interval=0.05)
    task = asyncio.create_task(relay.run())
    await read_topic(topic, expect=1, timeout=20, settle=1.0)
    await relay.stop()
    await task
    assert await relay.counts() == (0, 1)  # nothing waiting, one set aside

    [row] = await list_quarantined(DB_URL, schema)
    assert (row.topic, row.key, row.size) == (topic, b"K2", len(huge))
    assert "too large" in (row.last_error or "").lower() or "TooLarge" in (row.last_error or "")
    result = await asyncio.to_thread(
        runner.invoke, cli.app, ["outbox", "list", "--schema", schema, "--json"],
        env={"QS_DATABASE_URL": DB_URL})
    assert result.exit_code == 0, result.output
    assert [orjson.loads(line)["id"] for line in result.output.splitlines()] == [row.id]

    # the cause mended (here: the value made to fit, as a raised broker limit would let it),
    # the operator hands the row back; an id that is not quarantined is reported, not touched
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE outbox SET value = :v WHERE id = :id"),
                           {"v": b'{"n": 2}', "id": row.id})
    result = await asyncio.to_thread(
        runner.invoke, cli.app,
        ["outbox", "retry", "notifier", str(row.id), str(row.id + 1000), "--schema", schema,
         "--yes"], env={"QS_DATABASE_URL": DB_URL, "QS_RELAY_SHARDS": "4"})
    assert result.exit_code == 3, result.output  # one id was not quarantined
    assert f"[{row.id}]" in result.output and str(row.id + 1000) in result.output
    assert await relay.counts() == (1, 0)
    assert await retry_quarantined(DB_URL, schema, [row.id], 4) == []  # no longer quarantined

    relay = OutboxRelay(engine, producer, schema, shards=4, poll_interval=0.05)
    task = asyncio.create_task(relay.run())
    records = await read_topic(topic, expect=2, timeout=20, settle=1.0)
    await relay.stop()
    await task
    assert sorted(r.value for r in records) == [b'{"n": 1}', b'{"n": 2}']
    assert await relay.counts() == (0, 0)
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one() == 0


async def test_a_retried_row_moves_to_its_keys_shard_among_the_relays_shards_now(engine, schema):
    """Quarantined under 16 shards, retried when the relays run 4: a row left on shard 12
    would never be claimed again."""
    await create_probe_schema(engine, schema)
    key = next(k for k in (f"K{n}".encode() for n in range(100)) if outbox.shard_of(k, 16) >= 4)
    async with engine.begin() as conn:
        await outbox.write(conn, [outbox.OutboxMessage("t", key, b"{}")], 16, schema)
        await conn.execute(text("UPDATE outbox SET failed_at = now(), last_error = 'refused'"))
        row_id = (await conn.execute(text("SELECT id FROM outbox"))).scalar_one()
    assert await retry_quarantined(DB_URL, schema, [row_id], 4) == [row_id]
    async with engine.connect() as conn:
        shard, failed = (await conn.execute(text("SELECT shard, failed_at FROM outbox"))).one()
    assert (shard, failed) == (outbox.shard_of(key, 4), None)
