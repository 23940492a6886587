"""A consumer publishing its own small batches' outbox rows (``InlineRelay``), on the real
broker and database: what it publishes, what it leaves to the relay thread, and the all-or-none
cycle it runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import outbox
from shared.consumer import ConsumerRunner, RunnerConfig
from shared.db import make_engine
from shared.outbox import shard_of
from shared.probe import create_probe_schema, probe_spec
from shared.relay import RELAY_SESSION_SETTINGS, InlineRelay, OutboxRelay
from tests.conftest import DB_URL, KAFKA
from tests.integration.conftest import drop_scratch, eventually, read_topic
from tests.integration.helpers import produce_repayments

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
async def _drop_scratch(uid: str) -> AsyncIterator[None]:
    yield
    await drop_scratch(uid)


class _Wakes:
    """Stands in for ``RelayThread.wake``: counts the calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


async def _notifications(schema: str) -> tuple[list[str], Any]:
    """LISTEN on the schema's outbox channel; the list the notifications land in, and the
    connection to close."""
    import asyncpg

    conn = await asyncpg.connect(DB_URL.replace("postgresql+asyncpg", "postgresql"))
    seen: list[str] = []
    await conn.add_listener(outbox.notify_channel(schema), lambda *a: seen.append(a[2]))
    return seen, conn


async def _outbox_rows(engine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one()


async def _run_probe(engine, schema, topics, uid, inline: InlineRelay | None, *,
                     events: int, inline_max: int = 500) -> ConsumerRunner:
    """The probe consumer (one ``repayment.applied`` per event) until every event is applied;
    its outbox in 4 shards, as the relays here."""
    runner = ConsumerRunner(probe_spec(), engine, RunnerConfig(
        bootstrap=KAFKA, group_id=f"g-{uid}", schema=schema, topics=topics,
        source="urn:qingshou:test", max_records=500, poll_timeout_ms=100, outbox_shards=4,
        inline_publish_max=inline_max), inline=inline)
    task = asyncio.create_task(runner.run())

    async def applied() -> bool:
        return runner.applied >= events

    await eventually(applied)
    await runner.stop()
    await task
    return runner


def _inline(schema: str, producer, wakes: _Wakes) -> tuple[InlineRelay, AsyncEngine]:
    relay_engine = make_engine(DB_URL, schema, pool_size=1, settings=RELAY_SESSION_SETTINGS)
    relay = OutboxRelay(relay_engine, producer, schema, shards=4, batch=1000, name="inline")
    return InlineRelay(relay, fallback=wakes), relay_engine


async def _sixty_through(engine, schema, topics, producer, uid, *, inline_max: int,
                         read: bool) -> tuple[InlineRelay, list[str], _Wakes, list]:
    """60 repayments through the probe consumer with an inline relay (``inline_max``): the
    relay, the NOTIFYs seen, the fallback's calls, and the output topic's records if ``read``."""
    await create_probe_schema(engine, schema)
    seen, listener = await _notifications(schema)
    wakes = _Wakes()
    inline, relay_engine = _inline(schema, producer, wakes)
    await produce_repayments(producer, topics.loan_events, 60, loans=6)
    records: list = []
    try:
        await _run_probe(engine, schema, topics, uid, inline, events=60, inline_max=inline_max)
        if read:
            records = await read_topic(topics.name("repayments-applied"), expect=60,
                                       timeout=20, settle=0.5)
        await asyncio.sleep(0.3)  # notifications arrive after the commit
    finally:
        await inline.close()
        await relay_engine.dispose()
        await listener.close()
    return inline, seen, wakes, records


async def test_a_small_batch_publishes_its_rows_itself_and_wakes_no_relay(
        engine, schema, topics, producer, uid):
    inline, seen, wakes, records = await _sixty_through(engine, schema, topics, producer, uid,
                                                        inline_max=500, read=True)
    assert len(records) == 60
    assert inline.relay.published == 60
    assert await _outbox_rows(engine) == 0
    assert seen == []  # no NOTIFY: no relay woke for rows already on their way
    assert wakes.calls == 0


async def test_a_batch_over_the_limit_is_left_to_the_relay_with_a_notify(
        engine, schema, topics, producer, uid):
    # a limit of 0: every batch is over it (a fetch may bring any number of records)
    inline, seen, wakes, _ = await _sixty_through(engine, schema, topics, producer, uid,
                                                  inline_max=0, read=False)
    assert inline.relay.published == 0
    assert await _outbox_rows(engine) == 60  # waiting for the relay thread
    assert seen  # which the commit notified
    assert wakes.calls == 0


async def test_rows_the_inline_cycle_cannot_claim_go_to_the_relay(
        engine, schema, topics, producer, uid):
    """Another relay holds every shard's lock: the consumer's cycle claims nothing, wakes the
    relay thread, and the rows wait for it, none lost."""
    await create_probe_schema(engine, schema)
    wakes = _Wakes()
    inline, relay_engine = _inline(schema, producer, wakes)
    await produce_repayments(producer, topics.loan_events, 20, loans=4)
    holder = await engine.connect()
    await holder.execute(text("SELECT pg_advisory_lock(:ns, s) FROM generate_series(0, 3) s"),
                         {"ns": inline.relay._lock_ns})
    try:
        await _run_probe(engine, schema, topics, uid, inline, events=20)
        await inline.settle()
        assert wakes.calls >= 1
        assert inline.relay.published == 0
        assert await _outbox_rows(engine) == 20
    finally:
        # session locks outlive a pooled connection's return to the pool: given back here
        await holder.execute(text("SELECT pg_advisory_unlock_all()"))
        await holder.close()
    other = OutboxRelay(engine, producer, schema, shards=4, poll_interval=0.05, name="thread")
    task = asyncio.create_task(other.run())
    try:
        records = await read_topic(topics.name("repayments-applied"), expect=20, timeout=20,
                                   settle=0.3)
    finally:
        await other.stop()
        await task
        await inline.close()
        await relay_engine.dispose()
    assert len(records) == 20


async def test_all_or_none_keeps_every_row_when_one_is_refused(engine, schema, topics,
                                                               producer):
    """The inline cycle deletes in its claim and commits only if every row was acknowledged:
    one row the broker refuses rolls the cycle back, all three rows stay, and the relay
    thread's own cycle then sets the culprit aside and publishes the others."""
    await create_probe_schema(engine, schema)
    topic = topics.name("repayments-applied")
    msgs = [outbox.OutboxMessage(topic, b"K1", b'{"n": 1}'),
            outbox.OutboxMessage(topic, b"K1", b"x" * (2 * 1024 * 1024)),
            outbox.OutboxMessage(topic, b"K1", b'{"n": 3}')]
    async with engine.begin() as conn:
        await outbox.write(conn, msgs, shards=4, schema=schema, notify=False)
    relay = OutboxRelay(engine, producer, schema, shards=4, name="r")
    try:
        with pytest.raises(Exception):  # noqa: B017 - the broker's refusal, whatever its class
            await relay.publish_all_or_none([shard_of(b"K1", 4)])
    finally:
        await relay.close()
    assert await _outbox_rows(engine) == 3
    assert relay.published == 0
    # the relay thread's own loop: sets the culprit aside, publishes the others
    thread = OutboxRelay(engine, producer, schema, shards=4, poll_interval=0.05, name="t")
    task = asyncio.create_task(thread.run())
    records = await read_topic(topic, expect=2, timeout=20, settle=1.0)
    await thread.stop()
    await task
    values = [r.value for r in sorted(records, key=lambda r: r.offset)]
    # n1 may have gone out in the cycle that rolled back too: a copy, never a loss
    assert values[-2:] == [b'{"n": 1}', b'{"n": 3}']
    assert set(values) == {b'{"n": 1}', b'{"n": 3}'}
    assert await thread.counts() == (0, 1)


async def test_all_or_none_publishes_in_id_order_and_deletes(engine, schema, topics, producer):
    await create_probe_schema(engine, schema)
    topic = topics.name("repayments-applied")
    msgs = [outbox.OutboxMessage(topic, b"K", b"%d" % i) for i in range(50)]
    async with engine.begin() as conn:
        await outbox.write(conn, msgs, shards=4, schema=schema, notify=False)
    relay = OutboxRelay(engine, producer, schema, shards=4, name="r")
    try:
        assert len(await relay.publish_all_or_none([shard_of(b"K", 4)])) == 50
        # only the shards it is given: a row of another shard stays
        other = next(k for k in (b"A", b"B", b"C", b"D") if shard_of(k, 4) != shard_of(b"K", 4))
        async with engine.begin() as conn:
            await outbox.write(conn, [outbox.OutboxMessage(topic, other, b"x")], shards=4,
                               schema=schema, notify=False)
        assert await relay.publish_all_or_none([shard_of(b"K", 4)]) == set()
    finally:
        await relay.close()
    records = await read_topic(topic, expect=50, timeout=20, settle=0.3)
    assert [int(r.value) for r in sorted(records, key=lambda r: r.offset)] == list(range(50))
    assert await _outbox_rows(engine) == 1


async def test_a_relay_that_found_its_rows_locked_looks_again_soon(engine, schema, topics,
                                                                    producer):
    """A NOTIFY can come while another relay (a consumer's inline cycle) holds the row's shard:
    the woken relay claims nothing. With rows waiting it looks again within 50 ms, not after
    its poll interval (a minute here)."""
    await create_probe_schema(engine, schema)
    topic = topics.name("repayments-applied")
    relay = OutboxRelay(engine, producer, schema, shards=4, poll_interval=60.0, name="t")
    holder = await engine.connect()
    await holder.execute(text("SELECT pg_advisory_lock(:ns, :s)"),
                         {"ns": relay._lock_ns, "s": shard_of(b"K", 4)})
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.5)  # the relay found nothing and sleeps for a minute
        async with engine.begin() as conn:
            await outbox.write(conn, [outbox.OutboxMessage(topic, b"K", b"1")], shards=4,
                               schema=schema)  # with NOTIFY: the relay wakes, claims nothing
        await asyncio.sleep(0.5)
        assert relay.published == 0
    finally:
        await holder.execute(text("SELECT pg_advisory_unlock_all()"))  # its cycle ends
        await holder.close()
    records = await read_topic(topic, expect=1, timeout=10, settle=0.1)
    await relay.stop()
    await task
    assert [r.value for r in records] == [b"1"]
