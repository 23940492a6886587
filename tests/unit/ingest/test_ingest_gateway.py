"""The gateway core with a fake producer: checks, scopes, per-item outcomes, dedupe."""

from __future__ import annotations

import asyncio
import copy
import sys

import orjson

from services.ingest.gateway import RECORD_BATCHES_FROM, Item, Publisher, check, limit_size
from services.ingest.limits import DedupeCache
from services.ingest.routing import Router
from shared.auth import Principal
from shared.events import sample_cloudevent
from shared.topics import TopicNames

CORE = Principal(name="core", scopes=frozenset({"events:core"}))
ROUTER = Router(TopicNames("t"))


class FakeProducer:
    """Acknowledges every send, except events whose id is in ``fail``."""

    def __init__(self, fail: frozenset[str] = frozenset()) -> None:
        self.fail = fail
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.rebuilds = 0
        self.many_calls = 0

    async def send(self, topic, value=None, key=None, headers=None):
        fut = asyncio.get_running_loop().create_future()
        if orjson.loads(value)["id"] in self.fail:
            fut.set_exception(TimeoutError("no broker"))
        else:
            self.sent.append((topic, key, value))
            fut.set_result(None)
        return fut

    async def send_many(self, topic, records, headers=None):
        """Two "partitions" by key parity; a batch holding a failing id fails as a whole."""
        loop = asyncio.get_running_loop()
        self.many_calls += 1
        out = []
        for parity in (0, 1):
            indexes = [n for n, (key, _) in enumerate(records) if len(key) % 2 == parity]
            if not indexes:
                continue
            fut = loop.create_future()
            if any(orjson.loads(records[n][1])["id"] in self.fail for n in indexes):
                fut.set_exception(TimeoutError("no broker"))
            else:
                self.sent.extend((topic, records[n][0], records[n][1]) for n in indexes)
                fut.set_result(None)
            out.append((indexes, fut))
        return out

    async def rebuild(self) -> None:
        self.rebuilds += 1


def event(event_type: str = "repayment.received", event_id: str = "e1") -> dict:
    ev = copy.deepcopy(sample_cloudevent(event_type))
    ev["id"] = event_id
    return ev


def checked(obj, who=CORE, index=0) -> Item:
    return check(Item(index=index), obj, who, ROUTER, None)


def test_a_valid_event_gets_topic_key_and_its_own_bytes() -> None:
    ev = event()
    item = checked(ev)
    assert item.status == 0
    assert (item.topic, item.base_topic) == ("t.loan-events", "loan-events")
    assert item.key == ev["subject"].encode()
    assert orjson.loads(item.value) == ev
    raw = orjson.dumps(ev, option=orjson.OPT_INDENT_2)
    assert check(Item(index=0), ev, CORE, ROUTER, raw).value is raw


def test_the_field_at_fault_is_named() -> None:
    ev = event()
    ev["data"]["amount"] = 12.5
    ev["time"] = "yesterday"
    item = checked(ev)
    assert item.status == 422
    assert {e["field"] for e in item.errors} >= {"time"}
    ev = event()
    ev["data"]["amount"] = "twelve"
    assert checked(ev).errors[0]["field"] == "data.amount"


def test_scope_is_checked_before_the_payload() -> None:
    ev = event("promise.made")
    ev["data"] = {}
    item = checked(ev)
    assert item.status == 403 and item.errors[0]["field"] == "type"


def test_an_item_above_the_event_limit_is_refused_as_published() -> None:
    ev = event()
    size = len(checked(ev).value)  # what would be published: compact JSON
    assert limit_size(checked(ev), size).status == 0
    item = limit_size(checked(ev), size - 1)
    assert item.status == 413 and item.errors and item.errors[0]["field"] == ""
    assert item.result()["title"] == "Payload too large"
    bad = event("promise.made")
    assert limit_size(checked(bad), 1).status == 403  # an earlier refusal stands


def test_outbound_and_unknown_types_are_refused_and_non_objects_too() -> None:
    ev = event()
    ev["type"] = "stage.changed"
    assert checked(ev).status == 422
    ev["type"] = "loan.teleported"
    assert checked(ev).status == 422
    assert checked([1, 2]).status == 422


async def test_batch_outcomes_are_per_item_and_failures_are_not_accepted() -> None:
    producer = FakeProducer(fail=frozenset({"bad"}))
    publisher = Publisher(lambda: producer, lambda: True, DedupeCache(100, 60))
    items = [checked(event(event_id=i), index=n) for n, i in enumerate(["a", "bad", "c"])]
    items.append(checked({"nope": 1}, index=3))
    await publisher.publish(items)
    assert [i.status for i in items] == [202, 503, 202, 422]
    assert [orjson.loads(v)["id"] for _, _, v in producer.sent] == ["a", "c"]


async def test_a_recent_duplicate_is_accepted_but_not_sent_again() -> None:
    producer = FakeProducer()
    publisher = Publisher(lambda: producer, lambda: True, DedupeCache(100, 60))
    first = [checked(event(event_id="x"))]
    await publisher.publish(first)
    again = [checked(event(event_id="x")), checked(event(event_id="x"), index=1)]
    await publisher.publish(again)
    assert first[0].status == 202 and not first[0].duplicate
    assert all(i.status == 202 and i.duplicate for i in again)
    assert len(producer.sent) == 1


async def test_the_same_pair_twice_in_one_batch_is_sent_once() -> None:
    producer = FakeProducer()
    publisher = Publisher(lambda: producer, lambda: True, DedupeCache(100, 60))
    items = [checked(event(event_id="y"), index=n) for n in range(3)]
    await publisher.publish(items)
    assert [(i.status, i.duplicate) for i in items] == [(202, False), (202, True), (202, True)]
    assert len(producer.sent) == 1


async def test_a_failed_send_is_not_remembered_so_a_retry_is_sent() -> None:
    producer = FakeProducer(fail=frozenset({"z"}))
    publisher = Publisher(lambda: producer, lambda: True, DedupeCache(100, 60))
    items = [checked(event(event_id="z"))]
    await publisher.publish(items)
    assert items[0].status == 503
    producer.fail = frozenset()
    retry = [checked(event(event_id="z"))]
    await publisher.publish(retry)
    assert retry[0].status == 202 and not retry[0].duplicate


async def test_without_kafka_everything_fails_fast() -> None:
    producer = FakeProducer()
    publisher = Publisher(lambda: producer, lambda: False, DedupeCache(100, 60))
    items = [checked(event(event_id=str(n)), index=n) for n in range(3)]
    await publisher.publish(items)
    assert {i.status for i in items} == {503} and producer.sent == []


def loan_event(n: int) -> dict:
    ev = event(event_id=f"m{n}")
    ev["subject"] = ev["data"]["loan_id"] = f"LN-{n % 7}" + "x" * (n % 2)
    return ev


async def test_a_large_request_goes_as_record_batches_and_a_failed_batch_fails_each_item() -> None:
    producer = FakeProducer(fail=frozenset({"m3"}))
    publisher = Publisher(lambda: producer, lambda: True, DedupeCache(1000, 60))
    n = RECORD_BATCHES_FROM + 8
    items = [checked(loan_event(i), index=i) for i in range(n)]
    items.append(checked({"nope": 1}, index=n))
    await publisher.publish(items)
    assert producer.many_calls == 1
    # m3 has an odd-length key: its whole "partition" failed, the other one was acknowledged
    odd = {i for i in range(n) if len(items[i].key) % 2 == 1}
    assert 3 in odd
    assert [i.status for i in items[:n]] == [503 if i in odd else 202 for i in range(n)]
    assert items[n].status == 422
    assert sorted(orjson.loads(v)["id"] for _, _, v in producer.sent) == sorted(
        f"m{i}" for i in range(n) if i not in odd)
    # nothing failed is remembered: a retry is sent again
    producer.fail = frozenset()
    retry = [checked(loan_event(i), index=i) for i in range(n)]
    await publisher.publish(retry)
    assert [(i.status, i.duplicate) for i in retry] == [(202, i not in odd) for i in range(n)]


async def test_a_small_request_shares_the_producer_batches() -> None:
    producer = FakeProducer()
    publisher = Publisher(lambda: producer, lambda: True, DedupeCache(1000, 60))
    items = [checked(loan_event(i), index=i) for i in range(RECORD_BATCHES_FROM - 1)]
    await publisher.publish(items)
    assert producer.many_calls == 0 and {i.status for i in items} == {202}


def _deep_size(obj: object) -> int:
    parts = obj if isinstance(obj, tuple) else ()
    return sys.getsizeof(obj) + sum(_deep_size(p) for p in parts)


class RecordingCache(DedupeCache):
    """A dedupe cache that keeps every key it was asked to remember."""

    def __init__(self) -> None:
        super().__init__(100, 60)
        self.keys: list = []

    def add_many(self, keys, now) -> None:
        keys = list(keys)
        self.keys += keys
        super().add_many(keys, now)


async def test_the_dedupe_cache_holds_a_fixed_size_key_whatever_the_source() -> None:
    # 100,000 remembered pairs of long, non-ASCII sources and ids would hold hundreds of
    # megabytes (gigabytes while `source` had no length limit at all). What is remembered
    # per event must not grow with the event.
    cache = RecordingCache()
    publisher = Publisher(lambda: FakeProducer(), lambda: True, cache)
    ev = event(event_id="long")
    ev["source"] = "urn:" + "é" * 200
    await publisher.publish([checked(ev)])
    assert len(cache.keys) == 1 and len(cache) == 1
    assert _deep_size(cache.keys[0]) < 200
    again, other = checked(ev), event(event_id="long")
    other["source"] = "urn:" + "é" * 199 + "t"
    await publisher.publish([again, checked(other, index=1)])
    assert again.duplicate and len(cache) == 2
