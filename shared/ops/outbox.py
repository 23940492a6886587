"""Outbox rows the broker refused for good: list them, and send chosen ones again.

The relay quarantines a row Kafka refuses for a reason a retry cannot mend (too large, a
topic that does not exist, an authorisation error): it sets ``failed_at`` and ``last_error``
and goes on with the rest (``shared.relay``). The row stays in its service's outbox until an
operator acts: once the cause is mended (the broker's ``max.message.bytes`` raised, the topic
created), :func:`retry_quarantined` clears the mark and wakes that service's relay, which
publishes the row in its next cycle. A retried row goes out after the rows of its key that
were published while it waited: per-key order holds for everything but the retried row.

Each service keeps its own outbox in its own schema (by default the service's name); these
functions read and write those tables directly, as the relay does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text

from shared.db import make_engine
from shared.outbox import notify_channel, shard_of

__all__ = ["OUTBOX_SERVICES", "QuarantinedRow", "list_quarantined", "retry_quarantined"]

# the services whose consumers write an outbox (ingest publishes straight to Kafka)
OUTBOX_SERVICES: tuple[str, ...] = ("staging", "notifier", "incentives")

_LIST = text("""
SELECT id, topic, key, octet_length(value) AS size, created_at, failed_at, last_error
FROM outbox WHERE failed_at IS NOT NULL ORDER BY id LIMIT :n
""")

_HELD = text("""
SELECT id, key FROM outbox
WHERE id = ANY(CAST(:ids AS bigint[])) AND failed_at IS NOT NULL AND sent_at IS NULL
ORDER BY id FOR UPDATE
""")

# the shard again from the key: the relays' shard count may have changed while the row waited,
# and a row on a shard no relay claims any more would wait for ever
_RETRY = text("""
WITH cleared AS (
    UPDATE outbox SET failed_at = NULL, last_error = NULL, shard = u.shard
    FROM unnest(CAST(:ids AS bigint[]), CAST(:shards AS smallint[])) AS u(id, shard)
    WHERE outbox.id = u.id
    RETURNING outbox.id
)
SELECT id, pg_notify(:ch, '') IS NULL FROM cleared ORDER BY id
""")


@dataclass(frozen=True, slots=True)
class QuarantinedRow:
    schema: str
    id: int
    topic: str
    key: bytes | None
    size: int
    created_at: dt.datetime
    failed_at: dt.datetime
    last_error: str | None

    def to_dict(self) -> dict[str, object]:
        return {"schema": self.schema, "id": self.id, "topic": self.topic,
                "key": self.key.decode("utf-8", "replace") if self.key is not None else None,
                "size": self.size, "created_at": self.created_at.isoformat(),
                "failed_at": self.failed_at.isoformat(), "last_error": self.last_error}


async def list_quarantined(db_url: str, schema: str, limit: int = 1000) -> list[QuarantinedRow]:
    """The quarantined rows of ``schema``'s outbox, oldest first (at most ``limit``)."""
    engine = make_engine(db_url, schema, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(_LIST, {"n": limit})).all()
    finally:
        await engine.dispose()
    return [QuarantinedRow(schema, r.id, r.topic, r.key, r.size, r.created_at, r.failed_at,
                           r.last_error) for r in rows]


async def retry_quarantined(db_url: str, schema: str, ids: Sequence[int],
                            shards: int) -> list[int]:
    """Clear the quarantine of ``ids`` in ``schema``'s outbox, put each on its key's shard
    among ``shards`` (the relays' ``QS_RELAY_SHARDS`` now) and wake the relay; the ids that
    were quarantined (others, already sent or never quarantined, are left alone)."""
    engine = make_engine(db_url, schema, pool_size=1)
    try:
        async with engine.begin() as conn:
            held = (await conn.execute(_HELD, {"ids": list(ids)})).all()
            if not held:
                return []
            rows = (await conn.execute(_RETRY, {
                "ids": [r.id for r in held],
                "shards": [shard_of(r.key, shards) for r in held],
                "ch": notify_channel(schema)})).all()
    finally:
        await engine.dispose()
    return [r[0] for r in rows]
