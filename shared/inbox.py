"""The inbox: which ``(consumer, source, id)`` a consumer has already handled.

A row is written in the same transaction as the event's effects, so an event is applied at most
once however often Kafka delivers it. A message that was dead-lettered keeps a row with status
``dead`` and its Kafka position: a redelivery of that same message is skipped (no second copy in
the dead-letter topic), while a replay of it (the same event at another offset, e.g. from the
ops CLI once the loan exists) is handled again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

APPLIED = "applied"
DEAD = "dead"


@dataclass(frozen=True, slots=True)
class InboxKey:
    source: str
    id: str
    topic: str
    partition: int
    offset: int


_CLAIM = text("""
INSERT INTO inbox (consumer, source, id, topic, kafka_partition, kafka_offset, status)
SELECT :consumer, u.source, u.id, u.topic, u.part, u.off, 'applied'
FROM unnest(CAST(:sources AS text[]), CAST(:ids AS text[]), CAST(:topics AS text[]),
            CAST(:parts AS int[]), CAST(:offs AS bigint[])) AS u(source, id, topic, part, off)
ON CONFLICT (consumer, source, id) DO NOTHING
RETURNING source, id
""")

_REPLAYS = text("""
UPDATE inbox SET status = 'applied', topic = u.topic, kafka_partition = u.part,
       kafka_offset = u.off, received_at = now()
FROM unnest(CAST(:sources AS text[]), CAST(:ids AS text[]), CAST(:topics AS text[]),
            CAST(:parts AS int[]), CAST(:offs AS bigint[])) AS u(source, id, topic, part, off)
WHERE inbox.consumer = :consumer AND inbox.source = u.source AND inbox.id = u.id
  AND inbox.status = 'dead'
  AND (inbox.topic, inbox.kafka_partition, inbox.kafka_offset) <> (u.topic, u.part, u.off)
RETURNING inbox.source, inbox.id
""")

_MARK_DEAD = text("""
INSERT INTO inbox (consumer, source, id, topic, kafka_partition, kafka_offset, status)
SELECT :consumer, u.source, u.id, u.topic, u.part, u.off, 'dead'
FROM unnest(CAST(:sources AS text[]), CAST(:ids AS text[]), CAST(:topics AS text[]),
            CAST(:parts AS int[]), CAST(:offs AS bigint[])) AS u(source, id, topic, part, off)
ON CONFLICT (consumer, source, id) DO UPDATE
SET status = 'dead', topic = EXCLUDED.topic, kafka_partition = EXCLUDED.kafka_partition,
    kafka_offset = EXCLUDED.kafka_offset, received_at = now()
WHERE inbox.status = 'dead'
""")


def _params(consumer: str, keys: Sequence[InboxKey]) -> dict:
    return {
        "consumer": consumer,
        "sources": [k.source for k in keys],
        "ids": [k.id for k in keys],
        "topics": [k.topic for k in keys],
        "parts": [k.partition for k in keys],
        "offs": [k.offset for k in keys],
    }


async def claim(conn: AsyncConnection, consumer: str,
                keys: Sequence[InboxKey]) -> set[tuple[str, str]]:
    """Record ``keys`` as handled; return those that were new (or replays of dead letters).

    ``keys`` must not repeat a ``(source, id)``: the caller removes in-batch duplicates first.
    """
    if not keys:
        return set()
    params = _params(consumer, keys)
    fresh = {(r[0], r[1]) for r in await conn.execute(_CLAIM, params)}
    if len(fresh) < len(keys):
        rest = [k for k in keys if (k.source, k.id) not in fresh]
        fresh |= {(r[0], r[1]) for r in await conn.execute(_REPLAYS, _params(consumer, rest))}
    return fresh


async def mark_dead(conn: AsyncConnection, consumer: str, keys: Sequence[InboxKey]) -> None:
    """Record dead-lettered messages (so a redelivery does not dead-letter them twice).

    An event already applied stays applied: a poison copy of it never turns its row dead.
    ``keys`` must not repeat a ``(source, id)``.
    """
    if keys:
        await conn.execute(_MARK_DEAD, _params(consumer, keys))


async def dead_already(conn: AsyncConnection, consumer: str,
                       keys: Sequence[InboxKey]) -> set[tuple[str, str]]:
    """Which of ``keys`` were already dead-lettered from this very Kafka position."""
    if not keys:
        return set()
    rows = await conn.execute(text("""
        SELECT i.source, i.id FROM inbox i
        JOIN unnest(CAST(:sources AS text[]), CAST(:ids AS text[]),
                    CAST(:topics AS text[]), CAST(:parts AS int[]),
                    CAST(:offs AS bigint[])) AS u(source, id, topic, part, off)
          ON i.source = u.source AND i.id = u.id
        WHERE i.consumer = :consumer AND i.status = 'dead'
          AND (i.topic, i.kafka_partition, i.kafka_offset) = (u.topic, u.part, u.off)
    """), _params(consumer, keys))
    return {(r[0], r[1]) for r in rows}
