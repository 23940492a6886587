"""The consumer runner on the real broker and database: batches, inbox, DLQ, outbox."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import secrets
import weakref
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from sqlalchemy import text

import shared.consumer as consumer_module
from shared import inbox
from shared.consumer import ConsumerRunner, RunnerConfig
from shared.context import BatchContext, Rejected
from shared.events import Event, sample_cloudevent
from shared.probe import create_probe_schema, probe_spec
from shared.relay import OutboxRelay
from tests.conftest import KAFKA
from tests.integration.conftest import drop_scratch, eventually, read_topic
from tests.integration.helpers import encode, produce_repayments, repayment

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
async def _drop_scratch(uid: str) -> AsyncIterator[None]:
    """These tests leave no schema or topic behind."""
    yield
    await drop_scratch(uid)


def runner_for(spec, engine, topics, schema, uid, max_records=500) -> ConsumerRunner:
    return ConsumerRunner(spec, engine, RunnerConfig(
        bootstrap=KAFKA, group_id=f"g-{uid}", schema=schema, topics=topics,
        source="urn:qingshou:test", max_records=max_records, poll_timeout_ms=100))


async def probe_rows(engine) -> dict[str, tuple[Decimal, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT loan_id, paid, events FROM probe_loans"))
        return {r.loan_id: (r.paid, r.events) for r in rows}


async def test_duplicates_are_applied_once(engine, schema, topics, producer, uid):
    await create_probe_schema(engine, schema)
    topic = topics.loan_events
    events = [repayment(f"L{i % 5}", "10.00") for i in range(40)]
    for ev in events:
        await producer.send_and_wait(topic, encode(ev), key=ev["subject"].encode())
    # the same (source, id) again: right away (same batch) and later (another batch)
    for ev in events[:10]:
        await producer.send_and_wait(topic, encode(ev), key=ev["subject"].encode())

    runner = runner_for(probe_spec(), engine, topics, schema, uid)
    task = asyncio.create_task(runner.run())

    async def all_applied() -> bool:
        rows = await probe_rows(engine)
        return sum(n for _, n in rows.values()) >= 40

    await eventually(all_applied)
    for ev in events[10:20]:  # late duplicates, after the first delivery was committed
        await producer.send_and_wait(topic, encode(ev), key=ev["subject"].encode())
    await asyncio.sleep(1.5)
    await runner.stop()
    await task

    rows = await probe_rows(engine)
    assert {k: v[1] for k, v in rows.items()} == {f"L{i}": 8 for i in range(5)}
    assert all(v[0] == Decimal("80.00") for v in rows.values())
    async with engine.connect() as conn:
        outbox = (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one()
        inbox = (await conn.execute(text("SELECT count(*) FROM inbox"))).scalar_one()
    assert outbox == 40
    assert inbox == 40


async def test_poison_goes_to_dlq_and_the_rest_is_applied(engine, schema, topics, producer, uid):
    await create_probe_schema(engine, schema)
    spec = probe_spec()
    batched = spec.handlers["repayment.received"]

    async def picky(ctx: BatchContext, event: Event) -> None:
        await batched(ctx, event)  # writes first, then refuses: nothing may survive
        if event.data.amount == Decimal("666.00"):
            raise Rejected("probe_refused", "amount 666.00 is refused by the test handler")
        if event.data.amount == Decimal("13.00"):
            raise RuntimeError("handler bug")

    spec.handlers = {"repayment.received": picky}
    topic = topics.loan_events
    bad_schema = repayment("L1")
    bad_schema["data"]["amount"] = 12.5  # a float: money must be a decimal string
    unknown = repayment("L1")
    unknown["type"] = "loan.exploded"
    not_ce = {"hello": "world"}
    messages = [
        encode(repayment("L1", "1.00")),
        b"{not json",
        encode(not_ce),
        encode(unknown),
        encode(bad_schema),
        encode(repayment("L1", "666.00")),
        encode(repayment("L1", "13.00")),
        encode(repayment("L1", "2.00")),
    ]
    for m in messages:  # one key: one partition, so they share batches
        await producer.send_and_wait(topic, m, key=b"L1")

    runner = runner_for(spec, engine, topics, schema, uid)
    relay = OutboxRelay(engine, producer, schema, poll_interval=0.1)
    tasks = [asyncio.create_task(runner.run()), asyncio.create_task(relay.run())]

    dead = await read_topic(topics.dlq("loan-events"), expect=6, timeout=30)
    await producer.send_and_wait(topic, encode(repayment("L1", "4.00")), key=b"L1")

    async def three_applied() -> bool:
        return (await probe_rows(engine)).get("L1", (0, 0))[1] == 3

    await eventually(three_applied)
    await runner.stop()
    await relay.stop()
    await asyncio.gather(*tasks)

    reasons = sorted(dict(r.headers)["qs-reason"].decode() for r in dead)
    assert reasons == sorted(["invalid_json", "not_cloudevent", "unknown_type", "schema_error",
                              "probe_refused", "handler_error"])
    assert len(dead) == 6
    by_reason = {dict(r.headers)["qs-reason"].decode(): r for r in dead}
    assert by_reason["invalid_json"].value == b"{not json"
    assert b"data.amount" in dict(by_reason["schema_error"].headers)["qs-detail"]
    assert dict(by_reason["unknown_type"].headers)["qs-original-topic"] == topic.encode()
    assert (await probe_rows(engine))["L1"] == (Decimal("7.00"), 3)


async def test_dead_letter_replay_is_applied(engine, schema, topics, producer, uid):
    """A rejected event replayed later (at another offset) is handled again, not skipped."""
    await create_probe_schema(engine, schema)
    spec = probe_spec()
    batched = spec.handlers["repayment.received"]
    allow = asyncio.Event()

    async def gated(ctx: BatchContext, event: Event) -> None:
        if not allow.is_set():
            raise Rejected("unknown_loan", "not yet")
        await batched(ctx, event)

    spec.handlers = {"repayment.received": gated}
    ev = repayment("L9", "5.00")
    await producer.send_and_wait(topics.loan_events, encode(ev), key=b"L9")
    runner = runner_for(spec, engine, topics, schema, uid)
    task = asyncio.create_task(runner.run())

    async def dead() -> bool:
        async with engine.connect() as conn:
            return (await conn.execute(text(
                "SELECT count(*) FROM inbox WHERE status = 'dead'"))).scalar_one() == 1

    await eventually(dead)
    allow.set()
    await producer.send_and_wait(topics.loan_events, encode(ev), key=b"L9")  # the replay

    async def applied() -> bool:
        return (await probe_rows(engine)).get("L9") == (Decimal("5.00"), 1)

    await eventually(applied)
    await runner.stop()
    await task


async def test_database_outage_is_retried_without_losing_position(
        engine, schema, topics, producer, uid):
    await create_probe_schema(engine, schema)
    runner = runner_for(probe_spec(), engine, topics, schema, uid, max_records=50)
    task = asyncio.create_task(runner.run())
    sent = 0
    for round_ in range(5):
        for _ in range(100):
            ev = repayment(f"L{sent % 7}", "1.00")
            await producer.send_and_wait(topics.loan_events, encode(ev), key=ev["subject"].encode())
            sent += 1
        # cut every connection of the service's pool mid-stream
        async with engine.connect() as conn:
            await conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = :app AND pid <> pg_backend_pid()"),
                {"app": f"qingshou-{schema}"})
        await asyncio.sleep(0.1 * round_)

    async def all_applied() -> bool:
        return sum(n for _, n in (await probe_rows(engine)).values()) == sent

    await eventually(all_applied, timeout=60)
    await asyncio.sleep(1)
    await runner.stop()
    await task
    assert sum(n for _, n in (await probe_rows(engine)).values()) == sent


async def test_two_runners_in_one_group_apply_each_event_once(
        engine, schema, topics, producer, uid):
    await create_probe_schema(engine, schema)
    runners = [runner_for(probe_spec(), engine, topics, schema, uid, max_records=20)
               for _ in range(2)]
    tasks = [asyncio.create_task(r.run()) for r in runners]
    total = 600
    for i in range(total):
        ev = repayment(f"L{i % 30}", "1.00")
        await producer.send(topics.loan_events, encode(ev), key=ev["subject"].encode())
        if i == total // 2:
            await producer.flush()
    await producer.flush()

    async def all_applied() -> bool:
        return sum(n for _, n in (await probe_rows(engine)).values()) >= total

    await eventually(all_applied, timeout=60)
    await asyncio.sleep(1)
    for r in runners:
        await r.stop()
    await asyncio.gather(*tasks)
    rows = await probe_rows(engine)
    assert sum(n for _, n in rows.values()) == total
    assert all(n == total // 30 for _, n in rows.values())
    assert runners[0].applied + runners[1].applied == total


async def test_a_member_joining_while_a_batch_is_read_ahead_loses_and_repeats_nothing(
        engine, schema, topics, producer, uid):
    """The runner reads the next batch while one is applied: when a rebalance comes between,
    the batch read ahead is dropped and its records are read again, from their committed
    offsets, by whoever owns their partitions now. The second member joins while a batch of
    the first is in flight, after the next one has been read."""
    await create_probe_schema(engine, schema)
    total = 400
    await produce_repayments(producer, topics.loan_events, total, loans=20)

    def config() -> RunnerConfig:
        return RunnerConfig(bootstrap=KAFKA, group_id=f"g-{uid}", schema=schema, topics=topics,
                            source="urn:qingshou:test", max_records=20, poll_timeout_ms=100,
                            read_ahead_from=1)

    second = ConsumerRunner(probe_spec(), engine, config())
    tasks: list[asyncio.Task] = []
    spec = probe_spec()

    async def before(ctx: BatchContext, events: list[Event]) -> None:
        if first.applied >= 60 and not tasks[1:]:
            # the batch read ahead is in hand (a backlog is buffered): a member joins now
            revoked = first._revocation.count
            tasks.append(asyncio.create_task(second.run()))
            for _ in range(300):  # the revocation counts before it waits for this batch
                if first._revocation.count > revoked:
                    break
                await asyncio.sleep(0.1)

    spec.before_batch = before
    first = ConsumerRunner(spec, engine, config())
    dropped: list[int] = []
    real_log = first._log_dropped

    def log_dropped(records):
        dropped.append(len(records))
        real_log(records)

    first._log_dropped = log_dropped  # type: ignore[method-assign]
    tasks.append(asyncio.create_task(first.run()))

    async def all_applied() -> bool:
        return sum(n for _, n in (await probe_rows(engine)).values()) >= total

    try:
        await eventually(all_applied, timeout=120)
        await asyncio.sleep(1)
    finally:
        for r in (first, second):
            await r.stop()
        await asyncio.gather(*tasks)
    rows = await probe_rows(engine)
    assert sum(n for _, n in rows.values()) == total
    assert all(n == total // 20 for _, n in rows.values())
    assert dropped and sum(dropped) > 0  # the batch read ahead was dropped, not applied
    assert second.applied > 0
    assert first.applied + second.applied == total


async def test_copies_of_a_rejected_event_are_dead_lettered_once_and_replayable(
        engine, schema, topics, producer, uid):
    """Two copies of one (source, id) in a batch, the first refused: one dead letter, and a
    later replay applies the event exactly once."""
    await create_probe_schema(engine, schema)
    spec = probe_spec()
    batched = spec.handlers["repayment.received"]
    allow = asyncio.Event()

    async def gated(ctx: BatchContext, event: Event) -> None:
        if not allow.is_set():
            raise Rejected("unknown_loan", "not yet")
        await batched(ctx, event)

    spec.handlers = {"repayment.received": gated}
    ev = repayment("L7", "3.00")
    for _ in range(2):
        await producer.send_and_wait(topics.loan_events, encode(ev), key=b"L7")
    runner = runner_for(spec, engine, topics, schema, uid)
    relay = OutboxRelay(engine, producer, schema, poll_interval=0.1)
    tasks = [asyncio.create_task(runner.run()), asyncio.create_task(relay.run())]
    dead = await read_topic(topics.dlq("loan-events"), expect=1, timeout=20, settle=1.5)
    assert len(dead) == 1
    allow.set()
    await producer.send_and_wait(topics.loan_events, encode(ev), key=b"L7")  # the replay
    await producer.send_and_wait(topics.loan_events, encode(ev), key=b"L7")  # a late copy

    async def applied() -> bool:
        return (await probe_rows(engine)).get("L7") == (Decimal("3.00"), 1)

    await eventually(applied)
    await asyncio.sleep(1.0)
    await runner.stop()
    await relay.stop()
    await asyncio.gather(*tasks)
    assert (await probe_rows(engine))["L7"] == (Decimal("3.00"), 1)


async def test_types_not_handled_are_envelope_checked_only(engine, schema, topics, producer,
                                                           uid):
    """A type the consumer skips: a broken envelope is poison for it, bad data is not (the
    consumers of that type judge the data); a batch of only skipped types opens no
    transaction, claims no inbox row, and still moves the committed offset."""
    await create_probe_schema(engine, schema)
    topic = topics.loan_events
    missed = sample_cloudevent("payment.missed")  # the probe handles repayment.received only
    bad_data = {**missed, "id": f"bad-data-{uid}",
                "data": {**missed["data"], "amount_due": 12.5}}
    bad_envelope = {**missed, "id": f"bad-envelope-{uid}", "time": "2024-06-14T18:05:00"}
    loan = missed["subject"].encode()
    for m in (missed, bad_data, bad_envelope):
        meta = await producer.send_and_wait(topic, encode(m), key=loan)
    tp, end = TopicPartition(topic, meta.partition), meta.offset + 1

    runner = runner_for(probe_spec(), engine, topics, schema, uid)
    relay = OutboxRelay(engine, producer, schema, poll_interval=0.1)
    tasks = [asyncio.create_task(runner.run()), asyncio.create_task(relay.run())]
    dead = await read_topic(topics.dlq("loan-events"), expect=1, timeout=30, settle=2.0)

    async def committed_to_the_end() -> bool:
        return await runner.consumer.committed(tp) == end

    await eventually(committed_to_the_end)
    await runner.stop()
    await relay.stop()
    await asyncio.gather(*tasks)

    assert [dict(r.headers)["qs-reason"] for r in dead] == [b"not_cloudevent"]
    assert dict(dead[0].headers)["qs-detail"].startswith(b'[{"field":"time"')
    async with engine.connect() as conn:
        inbox_rows = (await conn.execute(
            text("SELECT id, status FROM inbox ORDER BY id"))).all()
    # the dead letter's synthetic key is the only row: nothing skipped was claimed
    assert [r.status for r in inbox_rows] == ["dead"]
    assert runner.applied == 0 and runner.dead_lettered == 1


async def test_an_event_the_inbox_cannot_record_is_dead_lettered_not_retried_for_ever(
        engine, schema, topics, producer, uid):
    """A valid CloudEvent whose inbox row the database refuses for good (it was a source too
    long for the primary-key index before the envelope capped it at 256 characters; here a
    CHECK constraint refuses its id) fails its claim and even its dead-letter row: it must
    still go to the DLQ (recorded by its Kafka position) and the consumer must go on, not
    retry the batch for ever."""
    await create_probe_schema(engine, schema)
    bad_id = f"cannot-record-{secrets.token_hex(4)}"
    async with engine.begin() as conn:
        await conn.execute(text(
            f"ALTER TABLE inbox ADD CONSTRAINT refuses_one CHECK (id <> '{bad_id}')"))
    topic = topics.loan_events
    messages = [repayment("L1", "1.00"), repayment("L1", "2.00", event_id=bad_id),
                repayment("L1", "4.00")]
    for m in messages:
        meta = await producer.send_and_wait(topic, encode(m), key=b"L1")
    tp, end = TopicPartition(topic, meta.partition), meta.offset + 1
    runner = runner_for(probe_spec(), engine, topics, schema, uid)
    relay = OutboxRelay(engine, producer, schema, poll_interval=0.1)
    tasks = [asyncio.create_task(runner.run()), asyncio.create_task(relay.run())]
    try:
        dead = await read_topic(topics.dlq("loan-events"), expect=1, timeout=20)

        async def committed_to_the_end() -> bool:
            return await runner.consumer.committed(tp) == end

        await eventually(committed_to_the_end, timeout=20)
    finally:
        await runner.stop()
        await relay.stop()
        await asyncio.gather(*tasks)
    assert [dict(r.headers)["qs-reason"] for r in dead] == [b"handler_error"]
    assert (await probe_rows(engine))["L1"] == (Decimal("5.00"), 2)


async def test_a_batch_takes_what_arrived_while_the_last_one_was_applied(
        engine, schema, topics, producer, uid):
    """Records that arrive, one producer request at a time, while a batch is applied are
    taken together by the next batch, not one request per batch.

    aiokafka fetches the first of them during the batch and then holds them; the runner's
    top-up fetches the rest when it takes them. The runner also reads a quiet topic
    (``calendar``), whose fetch must not stand in the way (prefetch hold)."""
    await create_probe_schema(engine, schema)
    spec = probe_spec()
    spec.topics = [*spec.topics, "calendar"]
    sizes: list[int] = []
    first_started = asyncio.Event()

    async def before(ctx: BatchContext, events: list[Event]) -> None:
        sizes.append(len(events))
        if len(sizes) == 1:
            first_started.set()
            await asyncio.sleep(1.0)  # a slow batch; four requests arrive meanwhile

    spec.before_batch = before
    runner = ConsumerRunner(spec, engine, RunnerConfig(
        bootstrap=KAFKA, group_id=f"g-{uid}", schema=schema, topics=topics,
        source="urn:qingshou:test", top_up_ms=5000))
    task = asyncio.create_task(runner.run())
    topic = topics.loan_events

    async def send(ev: dict) -> None:
        await producer.send_and_wait(topic, encode(ev), key=b"L1")

    await send(repayment("L1", "1.00"))
    await asyncio.wait_for(first_started.wait(), 30)
    for amount in ("2.00", "3.00", "4.00", "5.00"):
        await send(repayment("L1", amount))
        await asyncio.sleep(0.1)

    async def all_applied() -> bool:
        return (await probe_rows(engine)).get("L1", (0, 0))[1] == 5

    await eventually(all_applied)
    await runner.stop()
    await task
    assert runner.consumer is not None
    assert runner.consumer._fetcher._prefetch_backoff == runner.config.prefetch_hold_s
    assert sizes == [1, 4]


async def test_positions_past_skipped_messages_are_committed_with_the_next_write(
        engine, schema, topics, producer, uid):
    """Batches holding only skipped types commit no offset of their own (a commit each was
    the main cost of skipping a busy topic); the next batch that writes commits their
    position with its own, and so does stopping."""
    await create_probe_schema(engine, schema)
    topic = topics.loan_events
    skipped = sample_cloudevent("payment.missed")
    runner = ConsumerRunner(probe_spec(), engine, RunnerConfig(
        bootstrap=KAFKA, group_id=f"g-{uid}", schema=schema, topics=topics,
        source="urn:qingshou:test", poll_timeout_ms=100, skipped_commit_interval_s=3600))
    task = asyncio.create_task(runner.run())
    await eventually(lambda: _assigned(runner))
    commits: list[dict] = []
    real_commit = runner.consumer.commit

    async def counted(offsets=None):
        commits.append(dict(offsets or {}))
        await real_commit(offsets)

    runner.consumer.commit = counted  # the real commit, counted
    for n in range(3):  # three batches of skipped messages
        meta = await producer.send_and_wait(
            topic, encode({**skipped, "id": f"skip-{n}-{uid}"}), key=b"L1")
        tp = TopicPartition(topic, meta.partition)
        end = meta.offset + 1

        async def read_past(end=end, tp=tp) -> bool:
            return await runner.consumer.position(tp) == end

        await eventually(read_past)
    assert commits == []
    assert await runner.consumer.committed(tp) is None

    meta = await producer.send_and_wait(topic, encode(repayment("L1", "1.00")), key=b"L1")
    assert meta.partition == tp.partition

    async def applied() -> bool:
        return (await probe_rows(engine)).get("L1", (0, 0))[1] == 1

    await eventually(applied)

    async def committed_to_the_end() -> bool:
        return await runner.consumer.committed(tp) == meta.offset + 1

    await eventually(committed_to_the_end)
    assert len(commits) == 1

    last = await producer.send_and_wait(
        topic, encode({**skipped, "id": f"skip-last-{uid}"}), key=b"L1")

    async def read_last() -> bool:
        return await runner.consumer.position(tp) == last.offset + 1

    await eventually(read_last)
    await runner.stop()
    await task
    assert [o[tp].offset for o in commits] == [meta.offset + 1, last.offset + 1]


async def _assigned(runner: ConsumerRunner) -> bool:
    return runner.consumer is not None and bool(runner.consumer.assignment())


async def _unapplied_below_committed(engine, uid: str,
                                     partitions: set[TopicPartition]) -> list[tuple[int, int]]:
    """Positions under the group's committed offsets that no inbox row records as applied."""
    async with engine.connect() as conn:
        applied = {(r[0], r[1]) for r in await conn.execute(text(
            "SELECT kafka_partition, kafka_offset FROM inbox WHERE status = 'applied'"))}
    check = AIOKafkaConsumer(bootstrap_servers=KAFKA, group_id=f"g-{uid}",
                             enable_auto_commit=False)
    await check.start()
    try:
        missing = []
        for tp in partitions:
            committed = await check.committed(tp) or 0
            missing += [(tp.partition, o) for o in range(committed)
                        if (tp.partition, o) not in applied]
        return missing
    finally:
        await check.stop()


async def test_records_in_hand_when_a_top_up_meets_a_rebalance_are_not_applied(
        engine, schema, topics, producer, uid, monkeypatch):
    """The revocation waits for the batch in flight, but a batch's top-up fetch runs before
    the runner takes its lock: a rebalance that begins meanwhile revokes the partitions of the
    records already in hand. Those records are no longer this member's to apply (the new
    owner, or this member again from its committed offset, reads them); only what was fetched
    under the current assignment may be applied."""
    await create_probe_schema(engine, schema)
    monkeypatch.setattr(consumer_module, "_BUFFERED_S", 3600.0)  # every batch is topped up
    spec = probe_spec()
    batched = spec.handlers["repayment.received"]
    revocations = [0]
    fetched_at: dict[int, tuple[object, int]] = {}  # id(record) -> (record, revocations)
    stale: list[int] = []

    async def checked(ctx: BatchContext, event: Event) -> None:
        assert ctx.record is not None
        _, generation = fetched_at[id(ctx.record)]
        if generation != revocations[0]:
            stale.append(ctx.record.offset)
        await batched(ctx, event)

    spec.handlers = {"repayment.received": checked}
    runner = ConsumerRunner(spec, engine, RunnerConfig(
        bootstrap=KAFKA, group_id=f"g-{uid}", schema=schema, topics=topics,
        source="urn:qingshou:test", top_up_ms=15_000))
    for i in range(30):
        await producer.send(topics.loan_events, encode(repayment(f"L{i}", "1.00")),
                            key=f"L{i}".encode())
    await producer.flush()
    await runner.start()
    consumer = runner.consumer
    assert consumer is not None
    listener = consumer._subscription.listener
    real_revoked = listener.on_partitions_revoked

    async def counted_revoked(revoked):
        revocations[0] += 1
        await real_revoked(revoked)

    listener.on_partitions_revoked = counted_revoked
    real_getmany = consumer.getmany
    other: list[AIOKafkaConsumer] = []

    async def getmany(*args, **kwargs):
        if kwargs.get("timeout_ms") == 15_000 and not other:
            # the top-up of the first batch: another member joins the group meanwhile
            joiner = AIOKafkaConsumer(bootstrap_servers=KAFKA, group_id=f"g-{uid}",
                                      enable_auto_commit=False)
            other.append(joiner)
            await joiner.start()
            joiner.subscribe([topics.loan_events])
            before = revocations[0]
            for _ in range(300):
                if revocations[0] > before:
                    break
                await asyncio.sleep(0.1)
        found = await real_getmany(*args, **kwargs)
        for records in found.values():
            for record in records:
                fetched_at[id(record)] = (record, revocations[0])
        return found

    consumer.getmany = getmany
    task = asyncio.create_task(runner.run())
    try:
        async def rebalanced() -> bool:
            return bool(other) and revocations[0] > 0

        await eventually(rebalanced)
        await asyncio.sleep(3.0)  # the batch after the top-up is applied (or not) by now
        # more records: the runner moves on and commits past whatever it dropped
        for i in range(30, 90):
            await producer.send(topics.loan_events, encode(repayment(f"L{i}", "1.00")),
                                key=f"L{i}".encode())
        await producer.flush()
        await asyncio.sleep(4.0)
        mine = set(consumer.assignment())
    finally:
        await runner.stop()
        await task
        for joiner in other:
            await joiner.stop()
    assert revocations[0] > 0
    assert stale == []
    # what was fetched under the new assignment is applied, not dropped with the records in
    # hand: every position below the committed offset of the runner's partitions was applied
    assert mine
    assert await _unapplied_below_committed(engine, uid, mine) == []


async def test_the_in_process_benchmark_applies_every_prebuilt_event_once():
    # `qingshou bench instructions` runs this under callgrind: it must apply what it builds
    from shared.bench import apply_prebuilt
    from tests.conftest import DB_URL

    assert await apply_prebuilt(DB_URL, batches=2, size=150) == (300, 300)


async def test_a_batch_state_that_points_back_at_its_context_is_freed_when_the_batch_ends(
        engine, schema, topics, uid):
    """A service's batch state may hold the context (staging's Casework does): the runner
    clears the state, so the cycle and all it holds go by reference counting, not by a pass of
    the cyclic collector over every live object (measured: a tenth of staging's CPU)."""
    await create_probe_schema(engine, schema)

    class Work:  # what a service keeps for the batch, with a way back to the context
        def __init__(self, ctx: BatchContext) -> None:
            self.ctx = ctx

    seen: list[weakref.ref] = []
    spec = probe_spec()

    async def before(ctx: BatchContext, events: list[Event]) -> None:
        work = Work(ctx)
        ctx.state["work"] = work
        seen.append(weakref.ref(work))

    spec = dataclasses.replace(spec, before_batch=before)
    runner = runner_for(spec, engine, topics, schema, uid)
    events = [repayment(f"L{i}", "5.00") for i in range(3)]
    records = [ConsumerRecord(topics.loan_events, 0, n, 0, 0, ev["subject"].encode(),
                              encode(ev), None, 0, 0, []) for n, ev in enumerate(events)]
    gc.disable()
    try:
        await runner._apply_batch(records)
        assert len(seen) == 1 and seen[0]() is None  # freed without a collection
    finally:
        gc.enable()
        await runner._close_connection()
    assert {k: v[1] for k, v in (await probe_rows(engine)).items()} == {"L0": 1, "L1": 1, "L2": 1}


@pytest.mark.parametrize("plain_from", [1, 100], ids=["plain-insert-first", "small-batch"])
async def test_the_inbox_claims_new_keys_plainly_and_sorts_out_known_ones(
        engine, schema, monkeypatch, plain_from):
    """``inbox.claim``: a batch of new keys is one plain insert (None: all new); a batch with a
    known key falls back, from a savepoint that leaves nothing of the first attempt, to the
    insert that skips known keys, and a dead letter seen again at another position is a
    replay (claimed again), at its own position not (a redelivery). A batch under
    ``_PLAIN_FROM`` keys goes to that insert at once, with the same results."""
    monkeypatch.setattr(inbox, "_PLAIN_FROM", plain_from)
    await create_probe_schema(engine, schema)

    def key(event_id: str, offset: int) -> inbox.InboxKey:
        return inbox.InboxKey("urn:test", event_id, "t", 0, offset)

    async with engine.begin() as conn:
        assert await inbox.claim(conn, "probe", [key("a", 1), key("b", 2)]) is None
        await inbox.mark_dead(conn, "probe", [key("d", 3)])
    async with engine.begin() as conn:
        fresh = await inbox.claim(conn, "probe", [key("a", 4), key("c", 5), key("d", 3)])
        assert fresh == {("urn:test", "c")}
        assert await inbox.claim(conn, "probe", [key("d", 6), key("e", 7)]) == {
            ("urn:test", "d"), ("urn:test", "e")}
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT id, status, kafka_offset FROM inbox ORDER BY id"))).all()
    assert [tuple(r) for r in rows] == [("a", "applied", 1), ("b", "applied", 2),
                                       ("c", "applied", 5), ("d", "applied", 6),
                                       ("e", "applied", 7)]
