"""List and replay dead letters of a topic.

A dead letter (written by :mod:`shared.consumer`) on ``<topic>.dlq`` keeps the original key and
value and carries ``qs-reason``, ``qs-detail``, ``qs-consumer``, ``qs-original-topic``,
``qs-original-partition``, ``qs-original-offset`` and ``qs-dead-lettered-at`` headers, plus the
original message's own (non ``qs-``) headers.

Reading uses a group-less consumer assigned to every partition: nothing is committed and no
consumer group is created, so listing is free of side effects. Replay publishes the original
key and value again to the original topic through the project's idempotent producer, with the
original's own headers and ``qs-replayed-from`` / ``qs-replayed-at``. The consuming service's
inbox applies a replayed dead letter (same event, new offset) again; replaying one that was
meanwhile applied (a second replay, say) is skipped by the inbox as a duplicate, so replay is
safe to repeat.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from shared.kafka import Producer, make_producer
from shared.topics import DLQ_SUFFIX

__all__ = [
    "DeadLetter",
    "Replayed",
    "dlq_topic",
    "parse_offsets",
    "read_dead_letters",
    "replay_dead_letters",
    "select",
]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message of a dead-letter topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        return self.headers.get("qs-reason", "")

    @property
    def detail(self) -> str:
        return self.headers.get("qs-detail", "")

    @property
    def consumer(self) -> str:
        return self.headers.get("qs-consumer", "")

    @property
    def original_topic(self) -> str:
        """Where the message was first published; the DLQ name minus ``.dlq`` if the header
        is missing (a dead letter written by hand, say)."""
        topic = self.headers.get("qs-original-topic")
        if topic:
            return topic
        return self.topic.removesuffix(DLQ_SUFFIX)

    @property
    def original_partition(self) -> int | None:
        raw = self.headers.get("qs-original-partition")
        return int(raw) if raw and raw.lstrip("-").isdigit() else None

    @property
    def original_offset(self) -> int | None:
        raw = self.headers.get("qs-original-offset")
        return int(raw) if raw and raw.lstrip("-").isdigit() else None

    @property
    def dead_lettered_at(self) -> str:
        return self.headers.get("qs-dead-lettered-at", "")

    @property
    def position(self) -> str:
        """``topic:partition:offset`` of this dead letter."""
        return f"{self.topic}:{self.partition}:{self.offset}"

    def _event(self) -> dict[str, Any]:
        if not self.value:
            return {}
        try:
            doc = orjson.loads(self.value)
        except orjson.JSONDecodeError:
            return {}
        return doc if isinstance(doc, dict) else {}

    @property
    def event_type(self) -> str | None:
        value = self._event().get("type")
        return value if isinstance(value, str) else None

    @property
    def event_id(self) -> str | None:
        value = self._event().get("id")
        return value if isinstance(value, str) else None

    def passthrough_headers(self) -> list[tuple[str, bytes]]:
        """The original message's own headers (everything but the ``qs-`` ones)."""
        return [(k, v.encode()) for k, v in self.headers.items() if not k.startswith("qs-")]

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic, "partition": self.partition, "offset": self.offset,
            "key": self.key.decode("utf-8", "replace") if self.key is not None else None,
            "reason": self.reason, "detail": self.detail, "consumer": self.consumer,
            "original_topic": self.original_topic,
            "original_partition": self.original_partition,
            "original_offset": self.original_offset,
            "dead_lettered_at": self.dead_lettered_at,
            "event_type": self.event_type, "event_id": self.event_id,
            "headers": self.headers,
        }


@dataclass(frozen=True, slots=True)
class Replayed:
    """A dead letter published again (or, in a dry run, that would be)."""

    letter: DeadLetter
    topic: str
    partition: int | None = None
    offset: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.letter.position, "topic": self.topic,
                "partition": self.partition, "offset": self.offset,
                "reason": self.letter.reason, "event_type": self.letter.event_type,
                "event_id": self.letter.event_id}


def dlq_topic(topic: str) -> str:
    """``loan-events`` -> ``loan-events.dlq``; a name that already is a DLQ is kept."""
    return topic if topic.endswith(DLQ_SUFFIX) else f"{topic}{DLQ_SUFFIX}"


def parse_offsets(specs: Iterable[str]) -> set[tuple[int, int]]:
    """Parse ``P:O`` strings (partition:offset) into pairs; raises ValueError on a bad one."""
    out: set[tuple[int, int]] = set()
    for spec in specs:
        head, sep, tail = spec.partition(":")
        if not sep or not head.strip().isdigit() or not tail.strip().isdigit():
            raise ValueError(f"expected PARTITION:OFFSET, got {spec!r}")
        out.add((int(head), int(tail)))
    return out


def select(letters: Iterable[DeadLetter], *, reason: str | None = None,
           consumer: str | None = None,
           offsets: set[tuple[int, int]] | None = None) -> list[DeadLetter]:
    """The dead letters matching every given filter (a missing filter matches all)."""
    return [d for d in letters
            if (reason is None or d.reason == reason)
            and (consumer is None or d.consumer == consumer)
            and (not offsets or (d.partition, d.offset) in offsets)]


def _headers(raw: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    return {k: (v.decode("utf-8", "replace") if v is not None else "") for k, v in raw or ()}


async def read_dead_letters(bootstrap: str, topic: str, *, reason: str | None = None,
                            consumer: str | None = None,
                            offsets: set[tuple[int, int]] | None = None,
                            limit: int | None = None,
                            timeout: float = 30.0) -> list[DeadLetter]:
    """Every dead letter of ``dlq_topic(topic)`` from the beginning to the current end that
    matches the filters, in partition then offset order (at most ``limit``).

    Raises LookupError if the topic does not exist and TimeoutError if the end is not reached
    within ``timeout`` seconds.
    """
    name = dlq_topic(topic)
    kafka = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             client_id="qingshou-ops-dlq")
    try:
        await kafka.start()
        if name not in await kafka.topics():  # full metadata: never auto-creates the topic
            raise LookupError(f"topic {name!r} does not exist")
        # without a group, a subscription is assigned every partition of the topic, and
        # nothing is ever committed
        kafka.subscribe([name])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not kafka.assignment():
            if loop.time() > deadline:
                raise TimeoutError(f"no partitions of {name!r} assigned in {timeout}s")
            await asyncio.sleep(0.05)
        tps = sorted(kafka.assignment(), key=lambda tp: tp.partition)
        await kafka.seek_to_beginning(*tps)
        ends = await kafka.end_offsets(tps)
        pending = set(tps)
        found: list[DeadLetter] = []
        while True:
            # by position, not by the last record's offset: retention, compaction or control
            # records can leave gaps before the end
            for tp in list(pending):
                if await kafka.position(tp) >= ends[tp]:
                    pending.discard(tp)
            if not pending:
                break
            if loop.time() > deadline:
                raise TimeoutError(f"could not read {name!r} to its end in {timeout}s")
            batch = await kafka.getmany(*pending, timeout_ms=500)
            for tp, records in batch.items():
                for r in records:
                    if r.offset >= ends[tp]:
                        break
                    letter = DeadLetter(r.topic, r.partition, r.offset, r.key, r.value,
                                        _headers(r.headers))
                    found.extend(select([letter], reason=reason, consumer=consumer,
                                        offsets=offsets))
        found.sort(key=lambda d: (d.partition, d.offset))
        return found[:limit] if limit is not None else found
    finally:
        await kafka.stop()


async def replay_dead_letters(bootstrap: str, letters: Sequence[DeadLetter], *,
                              dry_run: bool = False,
                              producer: Producer | None = None) -> list[Replayed]:
    """Publish each dead letter's original key and value to its original topic, in order.

    Headers: the original's own, ``qs-replayed-from`` (``dlq-topic:partition:offset``) and
    ``qs-replayed-at`` (UTC, ISO 8601). Each send waits for the broker (acks=all); a failure
    stops the replay and raises, the ones before it stay published. ``dry_run`` publishes
    nothing and returns what would be published.
    """
    if dry_run:
        return [Replayed(d, d.original_topic) for d in letters]
    own = producer is None
    prod = producer or make_producer(bootstrap, client_id="qingshou-ops-replay")
    if own:
        await prod.start()
    try:
        done: list[Replayed] = []
        for d in letters:
            headers = [*d.passthrough_headers(),
                       ("qs-replayed-from", d.position.encode()),
                       ("qs-replayed-at", dt.datetime.now(dt.UTC).isoformat().encode())]
            meta = await prod.send_and_wait(d.original_topic, value=d.value, key=d.key,
                                            headers=headers)
            done.append(Replayed(d, d.original_topic, meta.partition, meta.offset))
        return done
    finally:
        if own:
            await prod.stop()
