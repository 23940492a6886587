"""The runner's offset commits after a batch: off the batch's path, yet in order.

Pure logic of ``ConsumerRunner._commit_pending`` against a stand-in for aiokafka's consumer
whose ``commit`` waits for the test to let it land (the real broker is exercised by the
integration and crash tests).
"""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from shared.consumer import ConsumerRunner, ConsumerSpec, RunnerConfig
from shared.db import make_engine

TP = TopicPartition("loan-events", 0)


class GatedConsumer:
    """``commit`` records its offsets when called and returns once ``gate`` is set."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started: list[int] = []
        self.landed: list[int] = []

    async def commit(self, offsets: dict) -> None:
        self.started.append(offsets[TP].offset)
        await self.gate.wait()
        self.landed.append(offsets[TP].offset)


def runner_with(consumer: GatedConsumer) -> ConsumerRunner:
    # the engine never connects: these tests touch offsets only
    engine = make_engine("postgresql+asyncpg://nobody@127.0.0.1:9/none", "probe")
    runner = ConsumerRunner(ConsumerSpec("probe", ["loan-events"], {}), engine,
                            RunnerConfig(bootstrap="127.0.0.1:9", group_id="g", schema="probe"))
    runner._consumer = consumer  # type: ignore[assignment]
    return runner


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_batch_commit_returns_before_the_broker_answers():
    consumer = GatedConsumer()
    runner = runner_with(consumer)
    runner._pending[TP] = 5
    await asyncio.wait_for(runner._commit_pending(wait=False), 1)
    await settle()
    assert consumer.started == [5] and consumer.landed == []
    consumer.gate.set()
    await runner._commit_settled()
    assert consumer.landed == [5]


async def test_the_next_commit_waits_for_the_one_in_flight():
    consumer = GatedConsumer()
    runner = runner_with(consumer)
    runner._pending[TP] = 5
    await runner._commit_pending(wait=False)
    runner._pending[TP] = 9
    second = asyncio.create_task(runner._commit_pending(wait=False))
    await settle()
    # the offsets of the second batch are not sent while the first batch's are unanswered
    assert consumer.started == [5] and not second.done()
    consumer.gate.set()
    await asyncio.wait_for(second, 1)
    await runner._commit_settled()
    assert consumer.started == [5, 9] and consumer.landed == [5, 9]


async def test_a_revocation_waits_until_the_commit_in_flight_has_landed():
    consumer = GatedConsumer()
    runner = runner_with(consumer)
    runner._pending[TP] = 5
    await runner._commit_pending(wait=False)
    revoked = asyncio.create_task(runner._revocation.on_partitions_revoked({TP}))
    await settle()
    # the next owner must start from the committed offset: the partition is not let go yet
    assert not revoked.done() and consumer.landed == []
    consumer.gate.set()
    await asyncio.wait_for(revoked, 1)
    assert consumer.landed == [5] and runner._committing is None


async def test_a_commit_that_waits_lands_before_it_returns():
    consumer = GatedConsumer()
    runner = runner_with(consumer)
    runner._pending[TP] = 7
    done = asyncio.create_task(runner._commit_pending())
    await settle()
    assert not done.done()
    consumer.gate.set()
    await asyncio.wait_for(done, 1)
    assert consumer.landed == [7] and runner._committing is None
