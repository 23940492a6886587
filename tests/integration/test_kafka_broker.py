"""The local Kafka broker (scripts/kafka.sh) works with aiokafka the way the services use it.

Needs a running broker: `scripts/kafka.sh start`. Bootstrap from QS_KAFKA_BOOTSTRAP
(default 127.0.0.1:QS_KAFKA_PORT, 9092). Every test makes its own uniquely named topic; nothing here
restarts the broker.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.conftest import KAFKA

BOOTSTRAP = KAFKA  # QS_KAFKA_BOOTSTRAP, else 127.0.0.1:QS_KAFKA_PORT (tests/conftest.py)

pytestmark = pytest.mark.integration


def _name(prefix: str) -> str:
    return f"it-{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def admin() -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=10_000)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def _create_topic(admin: AIOKafkaAdminClient, prefix: str, partitions: int = 1) -> str:
    topic = _name(prefix)
    await admin.create_topics(
        [NewTopic(name=topic, num_partitions=partitions, replication_factor=1)]
    )
    # Creation is asynchronous on the controller: wait until the broker serves it.
    for _ in range(100):
        if topic in await admin.list_topics():
            return topic
        await asyncio.sleep(0.05)
    raise AssertionError(f"topic {topic} not visible after create_topics")


def _producer() -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP,
        enable_idempotence=True,
        acks="all",
        request_timeout_ms=10_000,
    )


def _consumer(topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=10_000,
    )


@pytest.mark.integration
async def test_admin_creates_and_lists_topic(admin: AIOKafkaAdminClient) -> None:
    topic = await _create_topic(admin, "admin", partitions=3)
    described = await admin.describe_topics([topic])
    assert described[0]["error_code"] == 0
    assert len(described[0]["partitions"]) == 3


@pytest.mark.integration
async def test_idempotent_produce_manual_commit_and_resume(admin: AIOKafkaAdminClient) -> None:
    topic = await _create_topic(admin, "resume")
    group = _name("group")
    tp = TopicPartition(topic, 0)

    producer = _producer()
    await producer.start()
    try:
        for i in range(10):
            md = await producer.send_and_wait(topic, key=b"k", value=f"m{i}".encode())
            assert md.offset == i
    finally:
        await producer.stop()

    # First member: read 6 records, commit offset+1 of the last one processed, leave.
    first = _consumer(topic, group)
    await first.start()
    try:
        seen: list[bytes] = []
        async with asyncio.timeout(30):
            async for msg in first:
                seen.append(msg.value)
                if len(seen) == 6:
                    await first.commit({tp: msg.offset + 1})
                    break
        assert seen == [f"m{i}".encode() for i in range(6)]
        assert await first.committed(tp) == 6
    finally:
        await first.stop()

    # Second member of the same group resumes exactly after the committed offset.
    second = _consumer(topic, group)
    await second.start()
    try:
        rest: list[bytes] = []
        async with asyncio.timeout(30):
            async for msg in second:
                rest.append(msg.value)
                if len(rest) == 4:
                    await second.commit({tp: msg.offset + 1})
                    break
        assert rest == [f"m{i}".encode() for i in range(6, 10)]
        assert await second.committed(tp) == 10
    finally:
        await second.stop()


@pytest.mark.integration
async def test_headers_survive_round_trip(admin: AIOKafkaAdminClient) -> None:
    topic = await _create_topic(admin, "headers")
    headers = [
        ("event-type", b"loan.overdue"),
        ("trace-id", uuid.uuid4().hex.encode()),
        ("empty", b""),
        ("utf8", "逾期".encode()),
    ]
    producer = _producer()
    await producer.start()
    try:
        await producer.send_and_wait(topic, key=b"loan-1", value=b"{}", headers=headers)
    finally:
        await producer.stop()

    consumer = _consumer(topic, _name("group"))
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            msg = await consumer.getone()
        assert msg.key == b"loan-1"
        assert list(msg.headers) == headers
    finally:
        await consumer.stop()
