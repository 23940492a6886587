"""Fixtures on the real broker and database: unique topics and schemas per test."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import make_engine
from shared.kafka import Producer, ensure_topics, make_producer
from shared.topics import ALL_TOPICS, TopicNames
from tests.conftest import DB_URL, KAFKA

pytestmark = pytest.mark.integration


@pytest.fixture
async def topics(uid: str) -> TopicNames:
    names = TopicNames(f"t{uid}")
    await ensure_topics(KAFKA, [names.name(t) for t in ALL_TOPICS], partitions=3)
    return names


@pytest.fixture
def schema(uid: str) -> str:
    return f"t_{uid}"


@pytest.fixture
async def engine(schema: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(DB_URL, schema, pool_size=4)
    yield eng
    await eng.dispose()


async def drop_scratch(uid: str) -> None:
    """Drop the schema and topics the fixtures made for test ``uid`` (for modules whose tests
    leave nothing behind: an autouse fixture awaiting it after the test)."""
    eng = make_engine(DB_URL, "public", pool_size=1)
    async with eng.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA IF EXISTS "t_{uid}" CASCADE'))
    await eng.dispose()
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(f"t{uid}.")]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


@pytest.fixture
async def producer() -> AsyncIterator[Producer]:
    prod = make_producer(KAFKA, client_id="test")
    await prod.start()
    yield prod
    await prod.stop()


async def read_topic(topic: str, expect: int, timeout: float = 20.0,
                     settle: float = 0.5) -> list:
    """Read ``topic`` from the beginning until ``expect`` messages (then ``settle`` seconds
    more, to catch extras) or ``timeout``; returns the records."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=KAFKA, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    records: list = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        settle_until = None
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                records.extend(recs)
            if len(records) >= expect and settle_until is None:
                settle_until = loop.time() + settle
            if settle_until is not None and loop.time() >= settle_until:
                break
    finally:
        await consumer.stop()
    return records


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0,
                     interval: float = 0.2) -> None:
    """Wait until ``check()`` is true; fail the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        with contextlib.suppress(Exception):
            if await check():
                return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
