"""Foreign Kafka clients publish straight to ``loan-events`` and the project applies it.

Core banking systems are written in other languages: here ``kcat`` (C, librdkafka) and
confluent-kafka's ``Producer`` (librdkafka) publish structured-mode CloudEvents keyed by the
subject. The project's :class:`ConsumerRunner` (with the probe spec) must apply each exactly
once, and each client must put a loan on the same partition our aiokafka producer does.

Why ``partitioner=murmur2_random``: librdkafka's default partitioner is ``consistent_random``
(CRC32 of the key), while the Java client and our producer (:func:`shared.kafka.key_partitioner`)
hash with murmur2. With the default, the same loan published by a C client and by ingest would
land on two partitions and its events could be consumed out of order. murmur2_random is
murmur2 for keyed messages (random only for messages without a key, which we never send).
"""

from __future__ import annotations

import asyncio
import copy
import shutil
import subprocess
import uuid
from decimal import Decimal

import orjson
import pytest
from confluent_kafka import Producer as LibrdkafkaProducer
from sqlalchemy import text

from shared.consumer import ConsumerRunner, RunnerConfig
from shared.events.samples import sample_cloudevent
from shared.kafka import ensure_topics, key_partitioner
from shared.probe import create_probe_schema, probe_spec
from shared.topics import TopicNames
from tests.conftest import KAFKA
from tests.integration.conftest import eventually, read_topic

pytestmark = pytest.mark.integration

PARTITIONS = 6


def repayments(client: str, n: int) -> list[dict]:
    """``n`` valid repayment.received CloudEvents (from the shared sample), one loan each."""
    out = []
    for i in range(n):
        ev = copy.deepcopy(sample_cloudevent("repayment.received"))
        loan = f"LN-{client}-{i:03d}-{uuid.uuid4().hex[:6]}"
        ev["id"] = str(uuid.uuid4())
        ev["source"] = f"urn:core-banking:{client}"
        ev["subject"] = loan
        ev["data"].update(loan_id=loan, payment_id=f"PAY-{uuid.uuid4().hex[:10]}",
                          amount=f"{100 + i}.25")
        out.append(ev)
    return out


async def make_topics(uid: str) -> TopicNames:
    names = TopicNames(f"t{uid}")
    await ensure_topics(KAFKA, [names.loan_events], partitions=PARTITIONS)
    return names


def our_partition(key: str) -> int:
    """The partition our aiokafka producer picks for ``key``."""
    return key_partitioner(key.encode(), list(range(PARTITIONS)), list(range(PARTITIONS)))


async def consume_and_check(names: TopicNames, engine, schema: str, uid: str,
                            events: list[dict], published: int) -> None:
    """Run the project's consumer until every event is applied; each exactly once, on the
    partition our producer would have chosen."""
    records = await read_topic(names.loan_events, expect=published, timeout=20)
    assert len(records) == published
    for r in records:
        ev = orjson.loads(r.value)
        assert r.key == ev["subject"].encode()
        assert r.partition == our_partition(ev["subject"]), ev["subject"]
    assert len({r.partition for r in records}) > 1  # the keys did spread

    await create_probe_schema(engine, schema)
    runner = ConsumerRunner(probe_spec(), engine, RunnerConfig(
        bootstrap=KAFKA, group_id=f"g-{uid}", schema=schema, topics=names,
        source="urn:qingshou:test", poll_timeout_ms=100))
    task = asyncio.create_task(runner.run())

    async def rows() -> dict[str, tuple[Decimal, int]]:
        async with engine.connect() as conn:
            res = await conn.execute(text("SELECT loan_id, paid, events FROM probe_loans"))
            return {r.loan_id: (r.paid, r.events) for r in res}

    async def all_applied() -> bool:
        return len(await rows()) == len(events)

    try:
        await eventually(all_applied, timeout=30)
        await asyncio.sleep(1.5)  # time for a wrongly applied duplicate to show up
    finally:
        await runner.stop()
        await task
    assert await rows() == {ev["data"]["loan_id"]: (Decimal(ev["data"]["amount"]), 1)
                            for ev in events}
    assert runner.applied == len(events)
    assert runner.dead_lettered == 0


async def test_kcat_publishes_cloudevents_the_stack_applies(engine, schema, uid):
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        pytest.skip("kcat is not installed (Debian package kcat; scripts/deps.sh installs it)")
    names = await make_topics(uid)
    events = repayments("kcat", 8)
    # one message per line: key<TAB>value; the first event again at the end, as a core system
    # retrying after a lost acknowledgement would
    lines = [f"{ev['subject']}\t{orjson.dumps(ev).decode()}" for ev in [*events, events[0]]]
    proc = await asyncio.to_thread(
        subprocess.run,
        [kcat, "-P", "-b", KAFKA, "-t", names.loan_events, "-K", "\\t",
         "-H", "content-type=application/cloudevents+json",
         # murmur2 like the Java client and our producer (see the module docstring)
         "-X", "partitioner=murmur2_random", "-X", "acks=all", "-X", "enable.idempotence=true"],
        input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    await consume_and_check(names, engine, schema, uid, events, published=len(events) + 1)


async def test_librdkafka_producer_publishes_cloudevents_the_stack_applies(engine, schema, uid):
    names = await make_topics(uid)
    events = repayments("librdkafka", 8)
    producer = LibrdkafkaProducer({
        "bootstrap.servers": KAFKA,
        "client.id": "core-banking-c",
        "acks": "all",
        "enable.idempotence": True,
        # librdkafka defaults to consistent_random (CRC32 of the key); the Java client and our
        # aiokafka producer use murmur2, and a loan must land on the same partition whichever
        # client publishes it
        "partitioner": "murmur2_random",
    })
    delivered: dict[str, int] = {}
    errors: list[str] = []

    def on_delivery(err, msg) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            delivered[msg.key().decode()] = msg.partition()

    for ev in [*events, events[0]]:  # the last one is a duplicate (a retry by the client)
        producer.produce(names.loan_events, key=ev["subject"].encode(), value=orjson.dumps(ev),
                         headers=[("content-type", b"application/cloudevents+json")],
                         on_delivery=on_delivery)
    assert await asyncio.to_thread(producer.flush, 30) == 0
    assert errors == []
    # librdkafka's own report of where each key went equals our producer's choice
    assert delivered == {ev["subject"]: our_partition(ev["subject"]) for ev in events}
    await consume_and_check(names, engine, schema, uid, events, published=len(events) + 1)
