"""Pure pieces of the shared runtime: masking, API keys, problem paths, settings, retries."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy.exc import OperationalError

from shared.auth import DEV_API_KEYS, ApiKeySpec, KeyRing, hash_key
from shared.logs import JsonFormatter, mask_text
from shared.outbox import shard_of
from shared.problems import field_path
from shared.settings import ServiceSettings
from shared.transient import Backoff, is_transient


def test_masking_hides_phones_emails_and_names():
    assert mask_text("call +8613912345678 now") == "call +***78 now"
    assert mask_text("mail li.wei@example.com") == "mail l***@example.com"
    record = logging.LogRecord("t", logging.INFO, "f", 1, "borrower %s", ("+14155550123",), None)
    record.name_of_thing = "ok"
    record.borrower_name = "Wang Fang"
    record.contact = {"email": "a.b@bank.cn", "name": "Zhang San"}
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "borrower +***23"
    assert line["borrower_name"] == "W***"
    assert line["contact"] == {"email": "a***@bank.cn", "name": "Z***"}
    assert "Wang" not in json.dumps(line) and "Zhang" not in json.dumps(line)


def test_keyring_accepts_only_configured_keys_and_reports_scopes():
    ring = KeyRing([ApiKeySpec(name="core", sha256=hash_key("s3cret"), scopes=["events:core"])])
    who = ring.authenticate("s3cret")
    assert who is not None and who.allows("events:core") and not who.allows("admin")
    assert ring.authenticate("s3cret ") is None
    assert ring.authenticate("") is None
    assert ring.authenticate(None) is None


def test_dev_keys_are_refused_in_production():
    with pytest.raises(ValueError, match="development API keys"):
        ServiceSettings(environment="production")
    prod_key = ApiKeySpec(name="prod", sha256=hash_key("long-random"), scopes=["read"])
    assert ServiceSettings(environment="production", api_keys=[prod_key]).api_keys == [prod_key]
    assert len(ServiceSettings().api_keys) == len(DEV_API_KEYS)


def test_problem_field_paths_name_the_field():
    assert field_path(("body", "data", "amount")) == "data.amount"
    assert field_path(("body", 3, "time")) == "[3].time"
    assert field_path(("query", "limit")) == "limit"


def test_transient_errors_are_told_apart():
    assert is_transient(OperationalError("SELECT 1", {}, ConnectionError("gone")))
    assert is_transient(ConnectionResetError())
    assert not is_transient(ValueError("bad data"))
    b = Backoff(first=0.1, ceiling=0.5)
    assert [b.next_delay() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]


def test_outbox_shard_is_stable_per_key():
    assert shard_of(b"loan-1", 16) == shard_of(b"loan-1", 16)
    assert {shard_of(f"k{i}".encode(), 16) for i in range(200)} == set(range(16))


def test_cached_partitioner_matches_kafkas_default():
    from aiokafka.partitioner import DefaultPartitioner

    from shared.kafka import key_partitioner

    for n in (1, 3, 6, 12):
        parts = list(range(n))
        for i in range(300):
            key = f"loan-{i}".encode()
            assert key_partitioner(key, parts, parts) == DefaultPartitioner()(key, parts, parts)
    assert key_partitioner(None, [0, 1], [1]) == 1


def test_our_murmur2_is_kafkas_for_every_length():
    import random

    from aiokafka.partitioner import murmur2 as aiokafkas

    from shared.kafka import murmur2

    rng = random.Random(7)
    for length in range(301):
        for _ in range(10):
            data = rng.randbytes(length)
            assert murmur2(data) == aiokafkas(data), data
    assert murmur2(b"\xff" * 7) == aiokafkas(b"\xff" * 7)


def test_backoff_never_overflows():
    b = Backoff(first=0.1, ceiling=10.0)
    delays = [b.next_delay() for _ in range(5000)]
    assert delays[-1] == 10.0


def test_control_characters_are_refused_in_identity_attributes():
    from shared.events import EventError, parse_event, sample_cloudevent

    for field in ("id", "subject", "source"):
        event = sample_cloudevent("loan.closed")
        event[field] = "a\x00b"
        with pytest.raises(EventError) as err:
            parse_event(event)
        assert err.value.reason in {"not_cloudevent", "schema_error"}
        assert any(e["field"] in (field, "subject") for e in err.value.errors)


def test_pydantic_models_in_log_fields_are_masked():
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        phone: str

    record = logging.LogRecord("t", logging.INFO, "f", 1, "x", None, None)
    record.borrower = Person(name="Zhang San", phone="+8613800138000")
    line = json.loads(JsonFormatter().format(record))
    assert line["borrower"] == {"name": "Z***", "phone": "+***00"}
    assert mask_text("loan LN-2024-000123 owes 120000.00") == "loan LN-2024-000123 owes 120000.00"


def test_cursors_round_trip_and_foreign_ones_name_the_field():
    from shared.paging import decode_cursor, encode_cursor
    from shared.problems import Problem

    assert decode_cursor(encode_cursor(42), int, 0) == 42
    assert decode_cursor(encode_cursor("LN-9"), str, "") == "LN-9"
    assert decode_cursor(None, int, 0) == 0
    for bad in ("not-base64!", encode_cursor("LN-9"), encode_cursor(-1)):
        with pytest.raises(Problem) as err:
            decode_cursor(bad, int, 0)
        assert err.value.status == 400 and err.value.errors[0]["field"] == "cursor"


async def test_relay_resends_a_refused_batch_row_by_row_and_blames_only_the_culprit():
    """The relay sends a topic's rows as record batches; when the broker refuses a batch of
    several rows for good, each row goes again alone, so only the bad one is quarantined."""
    import asyncio
    from collections import namedtuple

    from aiokafka.errors import MessageSizeTooLargeError

    from shared.relay import OutboxRelay

    too_large = MessageSizeTooLargeError("too large")

    def settled(exc: BaseException | None) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)
        return fut

    class Producer:
        def __init__(self) -> None:
            self.batches: list[tuple[str, list, list]] = []
            self.singles: list[bytes] = []

        async def send_many(self, topic, records, record_headers=None):
            if len(records) == 1 and topic == "t1":  # the row-by-row resend
                value = records[0][1]
                self.singles.append(value)
                return [([0], settled(too_large if value == b"bad" else None))]
            self.batches.append((topic, list(records), list(record_headers)))
            return [([0, 1, 2], settled(too_large))] if topic == "t1" else [([0], settled(None))]

    # as the claim returns them: tuples with names (id, topic, key, value, headers)
    Row = namedtuple("Row", "id topic key value headers")
    rows = [Row(1, "t1", b"K", b"a", '{"h": "1"}'), Row(2, "t2", None, b"other", None),
            Row(3, "t1", b"K", b"bad", '{"h": "1"}'), Row(4, "t1", b"K", b"c", '{"h": "1"}')]
    producer = Producer()
    relay = OutboxRelay(None, producer, "s")  # type: ignore[arg-type]
    outcomes = await relay._send_all(rows)
    assert outcomes == [None, None, too_large, None]
    assert [(t, [v for _, v in recs], hdrs) for t, recs, hdrs in producer.batches] == [
        ("t1", [b"a", b"bad", b"c"], [[("h", b"1")]] * 3), ("t2", [b"other"], [[]])]
    assert producer.singles == [b"a", b"bad", b"c"]


class _ScriptedRelay:
    """Stands in for an OutboxRelay in InlineRelay's logic: each cycle returns (or raises)
    the next scripted outcome, and records the shards it was given."""

    name = "scripted"

    def __init__(self, *outcomes: set[int] | BaseException) -> None:
        self.outcomes = list(outcomes)
        self.shards: list[list[int]] = []
        self.rebuilds = 0
        self.producer = self

    async def publish_all_or_none(self, shards: list[int]) -> set[int]:
        self.shards.append(list(shards))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def rebuild(self) -> None:
        self.rebuilds += 1

    async def close(self) -> None:
        pass


async def test_inline_relay_wakes_the_relay_thread_only_for_rows_it_left():
    from aiokafka.errors import OutOfOrderSequenceNumber
    from prometheus_client import REGISTRY

    from shared.relay import InlineRelay

    def left(reason: str) -> float:
        return REGISTRY.get_sample_value(
            "qs_outbox_inline_left_total", {"relay": "scripted", "reason": reason}) or 0.0

    before = left("locked"), left("failed")
    wakes: list[int] = []
    relay = _ScriptedRelay({1, 2, 3, 9}, {5}, ConnectionError("gone"),
                           OutOfOrderSequenceNumber())
    inline = InlineRelay(relay, fallback=lambda: wakes.append(1))  # type: ignore[arg-type]
    inline.kick([(1, 0), (2, 3), (3, 0)])
    await inline.settle()
    # its shards only, once each; every row published (and an older one of those shards)
    assert (relay.shards, len(wakes)) == ([[0, 3]], 0)
    inline.kick([(4, 1), (5, 2)])
    await inline.settle()
    assert len(wakes) == 1  # row 4 left (its shard was another relay's): the thread takes it
    inline.kick([(6, 1)])
    await inline.settle()  # a failed cycle never raises here: it wakes the thread
    assert (len(wakes), relay.rebuilds) == (2, 0)
    inline.kick([(7, 1)])
    await inline.settle()
    assert (len(wakes), relay.rebuilds) == (3, 1)  # lost producer state: rebuilt
    assert len(relay.shards) == 4
    # what ops see: one batch left rows behind a held shard, two cycles failed
    assert (left("locked") - before[0], left("failed") - before[1]) == (1, 2)


async def test_inline_relay_runs_one_cycle_at_a_time_and_catches_up():
    import asyncio

    from shared.relay import InlineRelay

    gate = asyncio.Event()

    class _Slow(_ScriptedRelay):
        async def publish_all_or_none(self, shards: list[int]) -> set[int]:
            await gate.wait()
            return await super().publish_all_or_none(shards)

    relay = _Slow({1}, {2})
    inline = InlineRelay(relay, fallback=lambda: None)  # type: ignore[arg-type]
    inline.kick([(1, 0)])
    await asyncio.sleep(0)
    inline.kick([(2, 5)])  # committed while the first cycle runs: one more cycle after it
    gate.set()
    await inline.settle()
    assert relay.shards == [[0], [5]] and relay.outcomes == []


async def test_settling_a_stuck_inline_cycle_gives_up_after_its_timeout():
    import asyncio

    from shared.relay import InlineRelay

    class _Stuck(_ScriptedRelay):
        async def publish_all_or_none(self, shards: list[int]) -> set[int]:
            await asyncio.sleep(3600)
            return set()

    inline = InlineRelay(_Stuck(), fallback=lambda: None)  # type: ignore[arg-type]
    inline.kick([(1, 0)])
    await inline.close(timeout=0.05)  # returns: the stop of a service is bounded
    assert inline._task is not None and not inline._task.done()
    inline._task.cancel()
