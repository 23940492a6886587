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
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import JSON_ROWS, rows_json
from shared.frozen import quick_init

APPLIED = "applied"
DEAD = "dead"


@quick_init
@dataclass(frozen=True)
class InboxKey:
    source: str
    id: str
    topic: str
    partition: int
    offset: int


# The keys travel as one JSON array of arrays (shared.db.rows_json), read back by position:
# five typed arrays cost asyncpg an encoding step and a few abstract isinstance checks per
# element (19 µs per event in the notifier's profile), orjson one call for the whole batch.
_KEYS = f"""(SELECT r->>0 AS source, r->>1 AS id, r->>2 AS topic,
        CAST(r->>3 AS int) AS part, CAST(r->>4 AS bigint) AS off
        FROM {JSON_ROWS}
        ORDER BY n) AS u"""

_INSERT = f"""
INSERT INTO inbox (consumer, source, id, topic, kafka_partition, kafka_offset, status)
SELECT :consumer, u.source, u.id, u.topic, u.part, u.off, 'applied'
FROM {_KEYS}
"""
# Every key new (the usual batch): a plain insert, in a savepoint. ON CONFLICT checks the
# index before each row and inserts it speculatively, and RETURNING sends every key back:
# together 13 of the 50 ms a batch of 5,000 keys cost PostgreSQL, and the rows' decoding a
# few per cent of a consumer's CPU. The savepoint costs two round trips, more than that saves
# on a small batch (it halved the runner's one-event-per-transaction baseline, 539 -> 261/s):
# batches under _PLAIN_FROM keys take the ON CONFLICT insert at once.
_CLAIM_NEW = text(_INSERT)
_PLAIN_FROM = 100
# Some key known: which are new, and (below) which are replays of dead letters.
_CLAIM = text(_INSERT + """ON CONFLICT (consumer, source, id) DO NOTHING
RETURNING source, id
""")

_REPLAYS = text(f"""
UPDATE inbox SET status = 'applied', topic = u.topic, kafka_partition = u.part,
       kafka_offset = u.off, received_at = now()
FROM {_KEYS}
WHERE inbox.consumer = :consumer AND inbox.source = u.source AND inbox.id = u.id
  AND inbox.status = 'dead'
  AND (inbox.topic, inbox.kafka_partition, inbox.kafka_offset) <> (u.topic, u.part, u.off)
RETURNING inbox.source, inbox.id
""")

_MARK_DEAD = text(f"""
INSERT INTO inbox (consumer, source, id, topic, kafka_partition, kafka_offset, status)
SELECT :consumer, u.source, u.id, u.topic, u.part, u.off, 'dead'
FROM {_KEYS}
ON CONFLICT (consumer, source, id) DO UPDATE
SET status = 'dead', topic = EXCLUDED.topic, kafka_partition = EXCLUDED.kafka_partition,
    kafka_offset = EXCLUDED.kafka_offset, received_at = now()
WHERE inbox.status = 'dead'
""")

_DEAD_ALREADY = text(f"""
SELECT i.source, i.id FROM inbox i
JOIN {_KEYS} ON i.source = u.source AND i.id = u.id
WHERE i.consumer = :consumer AND i.status = 'dead'
  AND (i.topic, i.kafka_partition, i.kafka_offset) = (u.topic, u.part, u.off)
""")


def _params(consumer: str, keys: Sequence[InboxKey]) -> dict:
    return {"consumer": consumer,
            "rows": rows_json((k.source, k.id, k.topic, k.partition, k.offset) for k in keys)}


async def claim(conn: AsyncConnection, consumer: str,
                keys: Sequence[InboxKey]) -> set[tuple[str, str]] | None:
    """Record ``keys`` as handled; return those that were new (or replays of dead letters),
    or None when every one of them was new (the usual batch: no set of thousands of pairs to
    build and look up).

    ``keys`` must not repeat a ``(source, id)``: the caller removes in-batch duplicates first.
    """
    if not keys:
        return None
    params = _params(consumer, keys)
    if len(keys) >= _PLAIN_FROM:
        try:
            async with conn.begin_nested():
                await conn.execute(_CLAIM_NEW, params)
            return None
        except IntegrityError:  # a key already there (a redelivery, a re-sent or replayed
            pass  # event): rolled back to the savepoint, nothing of the attempt stays
    claimed = (await conn.execute(_CLAIM, params)).all()
    if len(claimed) == len(keys):
        return None
    fresh = {(r[0], r[1]) for r in claimed}
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
    rows = await conn.execute(_DEAD_ALREADY, _params(consumer, keys))
    return {(r[0], r[1]) for r in rows}
