"""Kafka clients of the project: the producer, topic creation and a readiness probe."""

from __future__ import annotations

import asyncio
import logging
import random
import struct
from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    TopicAlreadyExistsError,
    UnknownProducerId,
)

from shared.events import Event

log = logging.getLogger("qingshou.kafka")


# After a broker restart aiokafka's idempotent producer can be stuck for good with
# OutOfOrderSequenceNumber (aiokafka issue #1017, seen here with Kafka 4.4): only a new producer
# (a new producer id) recovers. These errors mean "rebuild the producer, then retry".
PRODUCER_STATE_ERRORS = (OutOfOrderSequenceNumber, UnknownProducerId, ProducerFenced)


class BatchNotSent(KafkaError):
    """A record batch left unsent because an earlier batch of its partition failed."""

    retriable = True


def _failed(exc: BaseException) -> asyncio.Future:
    fut: asyncio.Future = asyncio.get_running_loop().create_future()
    fut.set_exception(exc)
    return fut


async def _succeeded(fut: asyncio.Future) -> bool:
    """Wait for ``fut``; True if it resolved without an error (it stays for its owner to read)."""
    await asyncio.wait([fut])
    return not fut.cancelled() and fut.exception() is None


class Producer:
    """An idempotent, acks=all producer that rebuilds itself after a lost producer state.

    It offers the calls the project uses (``send``, ``send_and_wait``, ``flush``, ``client``);
    on one of :data:`PRODUCER_STATE_ERRORS` it replaces the underlying client and re-raises, so
    the caller's usual retry (the relay's next cycle, ingest's 503) goes through a fresh one.
    """

    def __init__(self, bootstrap: str, client_id: str = "qingshou"):
        self.bootstrap = bootstrap
        self.client_id = client_id
        # aiokafka clients need a running event loop: the client is made in start()
        self._producer: AIOKafkaProducer | None = None
        self._started = False
        self._client_down = False
        self._lock = asyncio.Lock()
        # one send_batch waiting per partition at a time: aiokafka's add_batch lets concurrent
        # waiters race for the free slot and counts their waiting against the timeout again
        # and again, so under load some of them time out (KafkaTimeoutError)
        self._enqueue_locks: defaultdict[tuple[str, int], asyncio.Lock] = \
            defaultdict(asyncio.Lock)
        self.rebuilds = 0

    @property
    def client(self):  # type: ignore[no-untyped-def]
        return self._live.client

    @property
    def _live(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("producer not started")
        return self._producer

    async def start(self) -> None:
        self._producer = _new_producer(self.bootstrap, self.client_id)
        await self._producer.start()
        self._started = True

    async def stop(self) -> None:
        self._started = False
        if self._producer is not None:
            await self._producer.stop()

    async def _ensure_client(self) -> None:
        if self._client_down:
            fresh = _new_producer(self.bootstrap, self.client_id)
            await fresh.start()  # raises while the broker is still away
            self._producer, self._client_down = fresh, False

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   headers: list[tuple[str, bytes]] | None = None) -> asyncio.Future:
        """Enqueue a message; await the returned future for the broker's acknowledgement."""
        await self._ensure_client()
        try:
            return await self._live.send(topic, value=value, key=key, headers=headers)
        except PRODUCER_STATE_ERRORS:
            await self.rebuild()
            raise

    async def send_many(self, topic: str, records: Sequence[tuple[bytes | None, bytes]],
                        headers: list[tuple[str, bytes]] | None = None,
                        record_headers: Sequence[list[tuple[str, bytes]]] | None = None,
                        ) -> list[tuple[list[int], asyncio.Future]]:
        """Enqueue ``(key, value)`` records as whole record batches, a few per partition.

        For many records at once this costs a fraction of ``send`` per record (no coroutine and
        no future each). Returns ``(indexes into records, future)`` per batch; each future
        resolves when the broker acknowledged every record of its batch, or fails for all of
        them (a batch that could not even be enqueued gets a failed future). Keys go to the
        partition ``send`` would choose, records of a partition keep their order, and
        idempotence applies as to any batch. Errors, a lost producer state included, only show
        in the futures: the caller checks for :data:`PRODUCER_STATE_ERRORS` and calls
        :meth:`rebuild`, as after ``send``. ``headers`` go on every record, or
        ``record_headers[i]`` on record ``i``.

        A partition's next batch is enqueued only once the previous one was acknowledged (the
        idempotent producer sends them one at a time anyway): after a batch failed, refused for
        good or not even enqueued, the partition's later batches are not sent and fail with
        :class:`BatchNotSent`, so they can never reach the broker before the failed records
        are sent again.
        """
        await self._ensure_client()
        live = self._live
        partitions = list(await live.partitions_for(topic))
        available = list(live.client.cluster.available_partitions_for_topic(topic) or ())
        by_partition: dict[int, list[int]] = {}
        for index, (key, _) in enumerate(records):
            # the arguments aiokafka's send() gives the partitioner, so both choose alike
            partition = key_partitioner(key, partitions, available)
            by_partition.setdefault(partition, []).append(index)
        hdrs = headers or []
        built: dict[int, list[tuple[list[int], Any]]] = {}
        for partition, indexes in by_partition.items():
            batch = live.create_batch()
            members: list[int] = []
            batches = built[partition] = []
            for index in indexes:
                key, value = records[index]
                if record_headers is not None:
                    hdrs = record_headers[index]
                if batch.append(key=key, value=value, timestamp=None, headers=hdrs) is None:
                    # full: a record always fits into an empty batch
                    batches.append((members, batch))
                    batch, members = live.create_batch(), []
                    batch.append(key=key, value=value, timestamp=None, headers=hdrs)
                members.append(index)
            batches.append((members, batch))
        out: list[tuple[list[int], asyncio.Future]] = []
        last: dict[int, asyncio.Future] = {}
        # round by round: every partition's first batch, then the second ones...
        for round_ in range(max((len(b) for b in built.values()), default=0)):
            for partition, batches in built.items():
                if round_ >= len(batches):
                    continue
                members, batch = batches[round_]
                before = last.get(partition)
                if before is not None and not await _succeeded(before):
                    fut = _failed(BatchNotSent(f"{topic}-{partition}: an earlier batch failed"))
                else:
                    fut = await self._enqueue(batch, topic, partition)
                last[partition] = fut
                out.append((members, fut))
        return out

    async def _enqueue(self, batch: Any, topic: str, partition: int) -> asyncio.Future:
        batch.close()  # closed: sent without lingering, and send() cannot add to it
        try:
            async with self._enqueue_locks[topic, partition]:
                return await self._live.send_batch(batch, topic, partition=partition)
        except Exception as exc:
            return _failed(exc)

    async def send_and_wait(self, topic: str, value: bytes | None = None,
                            key: bytes | None = None,
                            headers: list[tuple[str, bytes]] | None = None):  # type: ignore[no-untyped-def]
        future = await self.send(topic, value=value, key=key, headers=headers)
        try:
            return await future
        except PRODUCER_STATE_ERRORS:
            await self.rebuild()
            raise

    async def flush(self) -> None:
        await self._live.flush()

    async def rebuild(self) -> None:
        """Replace the client (new producer id); concurrent callers rebuild once."""
        old = self._live
        generation = self.rebuilds
        async with self._lock:
            if self.rebuilds != generation:  # another caller rebuilt it meanwhile
                return
            log.warning("rebuilding the Kafka producer after a lost producer state",
                        extra={"client_id": self.client_id})
            try:
                await asyncio.wait_for(old.stop(), 10)
            except Exception:  # noqa: S110 - the old client is being thrown away
                pass
            self._producer = _new_producer(self.bootstrap, self.client_id)
            self.rebuilds += 1
            if self._started:
                try:
                    await self._producer.start()
                except Exception as exc:
                    # the broker may still be away: the next send starts the client again
                    self._client_down = True
                    log.warning("producer restart failed; will retry on next send",
                                extra={"client_id": self.client_id, "error": repr(exc)})


def make_producer(bootstrap: str, client_id: str = "qingshou") -> Producer:
    """An idempotent producer that waits for every in-sync replica (acks=all).

    Idempotence keeps each partition's messages in send order across retries, which the outbox
    relay relies on for per-key order. Call ``await producer.start()`` before use.
    """
    return Producer(bootstrap, client_id)


_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_WORDS: dict[int, struct.Struct] = {}


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data`` (``org.apache.kafka.common.utils.Utils.murmur2``, seed
    0x9747b28c), as aiokafka's ``murmur2`` computes it, in half its time: the 4-byte words
    little-endian in one ``struct`` call, and only the masks 32-bit arithmetic needs (a unit
    test holds it to aiokafka's for every length up to 300). A new key is hashed once per
    process (:func:`_murmur_index`), and every new loan's first message is a new key."""
    length = len(data)
    h = 0x9747B28C ^ length
    n4 = length >> 2
    if n4:
        words = _WORDS.get(n4)
        if words is None:
            words = _WORDS[n4] = struct.Struct(f"<{n4}I")
        for k in words.unpack_from(data):
            k = (k * _M) & _MASK
            k = ((k ^ (k >> 24)) * _M) & _MASK
            h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    if tail:
        base = length - tail
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h = ((h ^ data[base]) * _M) & _MASK
    h = ((h ^ (h >> 13)) * _M) & _MASK
    return h ^ (h >> 15)


@lru_cache(maxsize=65536)
def _murmur_index(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def key_partitioner(key: bytes | None, all_partitions: list[int],
                    available: list[int]) -> int:
    """Kafka's default partitioning (murmur2 of the key, as the Java client and kcat do), with
    the pure-Python hash cached per key: a loan's events keep hashing the same key."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[_murmur_index(key, len(all_partitions))]


def _new_producer(bootstrap: str, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        partitioner=key_partitioner,
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        max_batch_size=256 * 1024,
        request_timeout_ms=15_000,
    )


async def publish(producer: Producer, topic: str, event: Event) -> None:
    """Send one event keyed by its subject and wait for the broker's acknowledgement."""
    await producer.send_and_wait(topic, value=event.to_json(), key=event.key,
                                 headers=[("content-type", b"application/cloudevents+json")])


async def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int = 6,
                        with_dlq: bool = True) -> list[str]:
    """Create ``topics`` (and their ``.dlq`` twins) if missing; returns the names created."""
    names = []
    for t in topics:
        names.append(t)
        if with_dlq and not t.endswith(".dlq"):
            names.append(f"{t}.dlq")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="qingshou-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(name=n, num_partitions=partitions, replication_factor=1)
                     for n in missing])
            except TopicAlreadyExistsError:
                pass  # another instance created them at the same moment
            # the metadata of a fresh topic takes a moment to reach every listener
            for _ in range(50):
                if set(missing) <= set(await admin.list_topics()):
                    break
                await asyncio.sleep(0.1)
        return missing
    finally:
        await admin.close()


async def kafka_ready(bootstrap: str, timeout: float = 3.0) -> bool:
    """True if the broker answers a metadata request within ``timeout`` seconds."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="qingshou-probe",
                                request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        await asyncio.wait_for(admin.list_topics(), timeout)
        return True
    except Exception:
        return False
    finally:
        try:
            await admin.close()
        except Exception:  # noqa: S110 - a probe that failed to start has nothing to close
            pass
