"""The transactional outbox: outbound messages written in the same transaction as the state.

Handlers queue messages on their batch context; the runner writes them with one multi-row
statement before the transaction commits and wakes the relay with ``NOTIFY``. Rows carry a
shard (a hash of the key): the relay publishes a shard's rows in id order under an advisory
lock, so several relays can run at once and every key's messages keep their order.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.events import Event


@dataclass(slots=True)
class OutboxMessage:
    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)


def shard_of(key: bytes | None, shards: int) -> int:
    return zlib.crc32(key or b"") % shards


def notify_channel(schema: str) -> str:
    return f"qs_outbox_{schema}"


def message_for(topic: str, event: Event) -> OutboxMessage:
    """An outbox message carrying ``event`` as a structured-mode CloudEvent keyed by subject."""
    return OutboxMessage(topic=topic, key=event.key, value=event.to_json(),
                         headers=EVENT_HEADERS)


# One round trip: the rows, and the relay's wake-up when the transaction commits (a
# data-modifying CTE runs to completion whether or not the query reads it).
_ROWS = """
    INSERT INTO outbox (shard, topic, key, value, headers)
    SELECT u.shard, u.topic, u.key, u.value, CAST(u.headers AS jsonb)
    FROM unnest(CAST(:shards AS smallint[]), CAST(:topics AS text[]), CAST(:keys AS bytea[]),
                CAST(:values AS bytea[]), CAST(:headers AS text[]))
         WITH ORDINALITY AS u(shard, topic, key, value, headers, n)
    ORDER BY u.n
"""
_INSERT = text(f"WITH rows AS ({_ROWS}) SELECT pg_notify(:ch, '')")
# the same rows without waking any relay, their ids back: the writer publishes them itself
# right after it commits (shared.relay.InlineRelay)
_INSERT_QUIET = text(_ROWS + "    RETURNING id, shard\n")

# the headers of every event message (message_for), shared by all of them (never mutate it):
# serialised once, not per message
EVENT_HEADERS: dict[str, str] = {"content-type": "application/cloudevents+json"}
_EVENT_HEADERS_JSON = orjson.dumps(EVENT_HEADERS).decode()


async def write(conn: AsyncConnection, messages: Sequence[OutboxMessage], shards: int,
                schema: str, notify: bool = True) -> list[tuple[int, int]]:
    """Insert ``messages`` (in order) and notify the relays when the transaction commits.
    ``notify=False``: no relay is woken, and the rows' (id, shard) come back, for the caller to
    publish them itself once committed (and to wake a relay for what it could not); else []."""
    if not messages:
        return []
    params = {
        "shards": [shard_of(m.key, shards) for m in messages],
        "topics": [m.topic for m in messages],
        "keys": [m.key for m in messages],
        "values": [m.value for m in messages],
        "headers": [_EVENT_HEADERS_JSON if m.headers is EVENT_HEADERS
                    else orjson.dumps(m.headers).decode() for m in messages],
    }
    if notify:
        await conn.execute(_INSERT, {**params, "ch": notify_channel(schema)})
        return []
    return [(r[0], r[1]) for r in await conn.execute(_INSERT_QUIET, params)]
