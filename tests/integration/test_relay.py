"""The outbox relay: two relays at once publish each row once and keep per-key order."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import text

from shared import outbox
from shared.kafka import make_producer
from shared.probe import create_probe_schema
from shared.relay import OutboxRelay
from tests.conftest import KAFKA
from tests.integration.conftest import drop_scratch, eventually, read_topic

pytestmark = pytest.mark.integration


async def test_two_relays_publish_each_row_once_in_key_order(engine, schema, topics):
    await create_probe_schema(engine, schema)
    topic = topics.name("repayments-applied")
    keys = [f"K{i}" for i in range(25)]
    total = 0
    # written in several transactions while the relays already run
    producers = [make_producer(KAFKA, client_id=f"relay{i}") for i in range(2)]
    for p in producers:
        await p.start()
    relays = [OutboxRelay(engine, p, schema, shards=8, batch=100, poll_interval=0.05,
                          name=f"r{i}") for i, p in enumerate(producers)]
    tasks = [asyncio.create_task(r.run()) for r in relays]
    seq: dict[str, int] = defaultdict(int)
    for _ in range(20):
        msgs = []
        for k in keys:
            seq[k] += 1
            msgs.append(outbox.OutboxMessage(topic, k.encode(),
                                             orjson.dumps({"key": k, "seq": seq[k]})))
        async with engine.begin() as conn:
            await outbox.write(conn, msgs, shards=8, schema=schema)
        total += len(msgs)
        await asyncio.sleep(0.02)

    async def drained() -> bool:
        return await relays[0].backlog() == 0

    await eventually(drained)
    records = await read_topic(topic, expect=total, timeout=30, settle=1.0)
    for r in relays:
        await r.stop()
    await asyncio.gather(*tasks)
    for p in producers:
        await p.stop()

    assert len(records) == total
    assert relays[0].published + relays[1].published == total
    seen: dict[str, list[int]] = defaultdict(list)
    for rec in sorted(records, key=lambda r: (r.partition, r.offset)):
        body = orjson.loads(rec.value)
        assert rec.key == body["key"].encode()
        seen[body["key"]].append(body["seq"])
    assert all(s == list(range(1, 21)) for s in seen.values())
    assert set(seen) == set(keys)
    async with engine.connect() as conn:
        left = (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one()
    assert left == 0  # every published row deleted


async def test_a_row_the_broker_refuses_is_quarantined_and_the_rest_go_out(
        engine, schema, topics, producer):
    await create_probe_schema(engine, schema)
    topic = topics.name("repayments-applied")
    huge = b"x" * (2 * 1024 * 1024)  # over the producer's 1 MB request limit
    msgs = [outbox.OutboxMessage(topic, b"K1", b'{"n": 1}'),
            outbox.OutboxMessage(topic, b"K1", huge),
            outbox.OutboxMessage(topic, b"K1", b'{"n": 3}')]
    async with engine.begin() as conn:
        await outbox.write(conn, msgs, shards=4, schema=schema)
    relay = OutboxRelay(engine, producer, schema, shards=4, poll_interval=0.05)
    task = asyncio.create_task(relay.run())
    records = await read_topic(topic, expect=2, timeout=20, settle=1.0)
    await relay.stop()
    await task
    assert [r.value for r in records] == [b'{"n": 1}', b'{"n": 3}']
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT sent_at IS NOT NULL AS sent, failed_at IS NOT NULL AS failed, last_error "
            "FROM outbox ORDER BY id"))).all()
    # the published rows are gone; the refused one stays, set aside
    assert [(r.sent, r.failed) for r in rows] == [(False, True)]
    assert "TooLarge" in rows[0].last_error or "too large" in rows[0].last_error.lower()
    assert await relay.backlog() == 0  # set aside is not waiting: the gauge does not count it


async def test_a_commit_wakes_the_relay_at_once(engine, schema, topics, producer):
    """``outbox.write`` notifies the relay on commit: with a poll interval of a minute, rows
    written after the relay went to sleep are still published within seconds."""
    await create_probe_schema(engine, schema)
    topic = topics.name("repayments-applied")
    relay = OutboxRelay(engine, producer, schema, shards=4, poll_interval=60.0)
    task = asyncio.create_task(relay.run())
    await asyncio.sleep(1.0)  # the relay found nothing and sleeps
    assert await _one_row_through(engine, schema, topic, relay, task, b'{"n": 1}') == \
        [b'{"n": 1}']


async def _one_row_through(engine, schema: str, topic: str, relay: OutboxRelay,
                           task: asyncio.Task, value: bytes) -> list[bytes]:
    """Commit one outbox row (shards=4) while ``relay`` runs, read the topic, stop the relay;
    the values the topic holds."""
    async with engine.begin() as conn:
        await outbox.write(conn, [outbox.OutboxMessage(topic, b"K", value)], shards=4,
                           schema=schema)
    records = await read_topic(topic, expect=1, timeout=15, settle=0.1)
    await relay.stop()
    await task
    return [r.value for r in records]


@pytest.fixture(autouse=True)
async def _drop_scratch(uid: str) -> AsyncIterator[None]:
    """These tests leave no schema or topic behind."""
    yield
    await drop_scratch(uid)


async def small_topic(name: str, max_bytes: int) -> None:
    """A topic whose broker refuses any record batch over ``max_bytes``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1,
                                            topic_configs={"max.message.bytes": str(max_bytes)})])
    finally:
        await admin.close()


async def _relay_rows_of_1kb(engine, schema, topics, producer, rows: int,
                             max_message_bytes: int) -> list[int]:
    """Queue ``rows`` rows of about 1 kB under one key for a topic that takes at most
    ``max_message_bytes`` per batch; relay them; the row numbers as the topic holds them."""
    await create_probe_schema(engine, schema)
    topic = topics.name("small")
    await small_topic(topic, max_message_bytes)
    pad = "x" * 1000
    msgs = [outbox.OutboxMessage(topic, b"K", orjson.dumps({"n": n, "pad": pad}))
            for n in range(rows)]
    async with engine.begin() as conn:
        await outbox.write(conn, msgs, shards=4, schema=schema)
    relay = OutboxRelay(engine, producer, schema, shards=4, poll_interval=0.05)
    task = asyncio.create_task(relay.run())
    records = await read_topic(topic, expect=rows, timeout=60, settle=1.0)
    await relay.stop()
    await task
    return [orjson.loads(r.value)["n"] for r in records]


async def test_a_refused_batch_goes_again_one_row_per_batch(engine, schema, topics, producer):
    """The broker refuses a 30 kB batch on a topic that takes 20 kB; each 1 kB row fits. The
    row-by-row resend must send each row in a batch of its own: ``send`` would put them in one
    batch again, it would be refused again, and 30 good rows would be quarantined (lost)."""
    assert await _relay_rows_of_1kb(engine, schema, topics, producer, 30, 20_000) == \
        list(range(30))
    async with engine.connect() as conn:
        quarantined = (await conn.execute(text(
            "SELECT count(*) FROM outbox WHERE failed_at IS NOT NULL"))).scalar_one()
    assert quarantined == 0


async def test_a_later_batch_never_overtakes_a_refused_one(engine, schema, topics, producer):
    """One key's 300 kB in one cycle make two record batches (256 kB max). The topic takes
    100 kB, so the broker refuses the first and would take the second: the second must not go
    out before the first one's rows, resent one by one, or the key's order is broken."""
    assert await _relay_rows_of_1kb(engine, schema, topics, producer, 300, 100_000) == \
        list(range(300))


async def test_the_relay_listens_again_after_its_connection_is_cut(engine, schema, topics,
                                                                   producer):
    """The LISTEN connection dies (PostgreSQL restarted, an admin killed it): the relay opens a
    new one, so a commit wakes it again instead of waiting for the poll."""
    await create_probe_schema(engine, schema)
    topic = topics.name("repayments-applied")
    relay = OutboxRelay(engine, producer, schema, shards=4, poll_interval=0.5)
    task = asyncio.create_task(relay.run())
    await asyncio.sleep(1.0)
    async with engine.begin() as conn:
        killed = (await conn.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN %' AND query LIKE :ch"),
            {"ch": f"%{outbox.notify_channel(schema)}%"})).scalar_one()
    assert killed == 1
    await asyncio.sleep(7.0)  # a few polls, and the 5 s between two LISTEN attempts
    relay.poll_interval = 60.0  # from now on only a notification wakes it in time
    await asyncio.sleep(1.0)
    assert await _one_row_through(engine, schema, topic, relay, task, b'{"n": 2}') == \
        [b'{"n": 2}']


async def test_the_relay_thread_publishes_on_its_own_loop_and_stops_cleanly(
        engine, schema, topics):
    """How the services run their relay: a thread with its own loop, engine and producer.
    It publishes what the service's transactions wrote, reports itself alive, and stops after
    its cycle; one that cannot start says why."""
    from shared.relay import RelayThread
    from tests.conftest import DB_URL

    await create_probe_schema(engine, schema)
    topic = topics.name("repayments-applied")
    thread = RelayThread(DB_URL, schema, KAFKA, name="t", shards=4, batch=50,
                         poll_interval=0.05)
    await thread.start()
    assert thread.alive()
    msgs = [outbox.OutboxMessage(topic, f"K{i}".encode(), b"%d" % i) for i in range(120)]
    async with engine.begin() as conn:
        await outbox.write(conn, msgs, shards=4, schema=schema)
    records = await read_topic(topic, expect=120, timeout=30, settle=0.5)
    await thread.stop()
    assert not thread.alive()
    assert sorted(int(r.value) for r in records) == list(range(120))
    assert thread.relay is not None and thread.relay.published == 120

    broken = RelayThread(DB_URL, schema, "127.0.0.1:1", name="broken")
    with pytest.raises(Exception):  # noqa: B017 - the producer's own connection error
        await broken.start()
    assert not broken.alive()
