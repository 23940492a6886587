"""``qingshou dlq list`` and ``dlq replay`` against the real broker.

Three dead letters in the consumer's format go to ``<prefix>.loan-events.dlq``; listing returns
them all (and the CLI prints them); replaying those of one reason puts exactly their original
keys and values back on ``<prefix>.loan-events``, with the replay headers.
"""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from typer.testing import CliRunner

from shared import cli
from shared.kafka import ensure_topics
from shared.ops import dlq
from shared.topics import TopicNames
from tests.conftest import KAFKA
from tests.integration.conftest import read_topic
from tests.integration.helpers import encode, repayment

pytestmark = pytest.mark.integration

runner = CliRunner()


def _headers(reason: str, consumer: str, topic: str, partition: int, offset: int,
             detail: str) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in {
        "qs-reason": reason, "qs-detail": detail, "qs-consumer": consumer,
        "qs-original-topic": topic, "qs-original-partition": str(partition),
        "qs-original-offset": str(offset), "qs-dead-lettered-at": "2026-11-28T02:00:00+00:00",
        "content-type": "application/cloudevents+json",  # the original's own header
    }.items()]


@pytest.fixture
async def dead_letters(uid: str):
    names = TopicNames(f"t{uid}")
    await ensure_topics(KAFKA, [names.loan_events], partitions=3)
    originals = [repayment("LN-A", "10.00"), repayment("LN-B", "20.00")]
    values = [encode(originals[0]), b"{not json", encode(originals[1])]
    specs = [("unknown_loan", "staging", 11, "loan LN-A is not known"),
             ("invalid_json", "notifier", 12, "expecting property name"),
             ("unknown_loan", "incentives", 13, "loan LN-B is not known")]
    keys = [b"LN-A", b"LN-X", b"LN-B"]
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all")
    await producer.start()
    try:
        for key, value, (reason, consumer, offset, detail) in zip(keys, values, specs,
                                                                  strict=True):
            await producer.send_and_wait(
                names.dlq("loan-events"), value, key=key,
                headers=_headers(reason, consumer, names.loan_events, 0, offset, detail))
    finally:
        await producer.stop()
    return names, originals


async def test_list_returns_every_dead_letter(dead_letters):
    names, originals = dead_letters
    letters = await dlq.read_dead_letters(KAFKA, names.loan_events)
    assert len(letters) == 3
    by_key = {d.key: d for d in letters}
    a = by_key[b"LN-A"]
    assert (a.reason, a.consumer, a.original_topic, a.original_offset) == (
        "unknown_loan", "staging", names.loan_events, 11)
    assert (a.event_type, a.event_id) == ("repayment.received", originals[0]["id"])
    assert by_key[b"LN-X"].event_type is None
    assert [d.key for d in await dlq.read_dead_letters(
        KAFKA, names.loan_events, consumer="notifier")] == [b"LN-X"]
    assert len(await dlq.read_dead_letters(KAFKA, names.loan_events, limit=2)) == 2

    # the CLI, in a thread: it runs its own event loop
    result = await asyncio.to_thread(
        runner.invoke, cli.app, ["dlq", "list", "loan-events", "--prefix", names.prefix],
        env={"COLUMNS": "250", "QS_KAFKA_BOOTSTRAP": KAFKA})
    assert result.exit_code == 0, result.output
    assert "3 dead letter(s)" in result.output
    assert result.output.count("unknown_loan") == 2 and "invalid_json" in result.output
    assert originals[1]["id"] in result.output and "(not JSON)" in result.output

    result = await asyncio.to_thread(
        runner.invoke, cli.app, ["dlq", "list", names.loan_events, "--prefix", names.prefix,
                                 "--reason", "invalid_json", "--json"],
        env={"QS_KAFKA_BOOTSTRAP": KAFKA})
    assert result.exit_code == 0, result.output
    rows = [orjson.loads(line) for line in result.output.splitlines()]
    assert [(r["key"], r["consumer"], r["original_offset"]) for r in rows] == [
        ("LN-X", "notifier", 12)]


async def test_list_of_a_missing_topic_says_so():
    result = await asyncio.to_thread(
        runner.invoke, cli.app, ["dlq", "list", f"nope-{uuid.uuid4().hex}", "--prefix", ""],
        env={"QS_KAFKA_BOOTSTRAP": KAFKA})
    assert result.exit_code == 2
    assert "does not exist" in result.output


async def test_replay_by_reason_republishes_exactly_the_selected(dead_letters):
    names, originals = dead_letters
    env = {"COLUMNS": "250", "QS_KAFKA_BOOTSTRAP": KAFKA}
    base = ["dlq", "replay", "loan-events", "--prefix", names.prefix, "--reason", "unknown_loan"]

    dry = await asyncio.to_thread(runner.invoke, cli.app, [*base, "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "would replay 2 dead letter(s)" in dry.output
    no = await asyncio.to_thread(runner.invoke, cli.app, base, env=env, input="n\n")
    assert no.exit_code == 1 and "nothing published" in no.output
    assert await read_topic(names.loan_events, expect=1, timeout=2) == []

    result = await asyncio.to_thread(runner.invoke, cli.app, [*base, "--yes"], env=env)
    assert result.exit_code == 0, result.output
    assert "replayed 2 dead letter(s)" in result.output

    records = await read_topic(names.loan_events, expect=2, timeout=20, settle=1.5)
    assert sorted((r.key, r.value) for r in records) == sorted(
        (ev["subject"].encode(), encode(ev)) for ev in originals)
    letters = {d.key: d for d in await dlq.read_dead_letters(KAFKA, names.loan_events)}
    for r in records:
        headers = dict(r.headers)
        assert headers["qs-replayed-from"].decode() == letters[r.key].position
        assert headers["qs-replayed-at"].decode().startswith("20")
        assert headers["content-type"] == b"application/cloudevents+json"
        assert not any(k in headers for k in ("qs-reason", "qs-consumer", "qs-detail"))

    # by position: only the one named is replayed
    x = letters[b"LN-X"]
    result = await asyncio.to_thread(
        runner.invoke, cli.app, ["dlq", "replay", "loan-events", "--prefix", names.prefix,
                                 "--offset", f"{x.partition}:{x.offset}", "-y"], env=env)
    assert result.exit_code == 0, result.output
    assert "replayed 1 dead letter(s)" in result.output
    records = await read_topic(names.loan_events, expect=3, timeout=20, settle=1.0)
    assert len(records) == 3
    assert [(r.key, r.value) for r in records if r.key == b"LN-X"] == [(b"LN-X", b"{not json")]
