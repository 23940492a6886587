"""The outbox relay: publishes committed outbox rows to Kafka, each at least once, in order.

One cycle is one transaction: take the advisory locks of every free shard, claim the oldest
unsent rows of those shards with ``FOR UPDATE SKIP LOCKED``, publish them (acks=all, idempotent
producer), delete the acknowledged ones, commit. A relay that dies mid-cycle leaves its rows
unsent and unlocked, and they go out again (downstream inboxes drop the duplicate). Relays wake on
``LISTEN``/``NOTIFY`` and poll at a short interval in case a notification is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.db import KeptConnection, make_engine
from shared.kafka import PRODUCER_STATE_ERRORS, Producer, make_producer
from shared.metrics import (
    OUTBOX_BACKLOG,
    OUTBOX_INLINE_LEFT,
    OUTBOX_PUBLISHED,
    OUTBOX_QUARANTINED,
)
from shared.outbox import notify_channel
from shared.transient import Backoff, is_transient

log = logging.getLogger("qingshou.relay")

# headers as text: decoded here with orjson (and memoised), not by the driver's json codec
# One round trip: take every shard's advisory lock that is free (so that several relays of a
# service keep each key's messages in order), then this cycle's rows of those shards. Only
# rows of a shard whose lock was taken come back, however much of the CTE the plan reads.
# the rows waiting to be published: the predicate of the partial index `outbox_pending`
# (shared.migrations), written the same way in every query so that the planner uses it
_WAITING = "sent_at IS NULL AND failed_at IS NULL"
_LOCKED = """
WITH locked AS MATERIALIZED (
    SELECT CAST(s AS smallint) AS shard FROM {shards} s
    WHERE pg_try_advisory_xact_lock(:ns, s)
)"""
_CLAIMED = f"""
SELECT id, topic, key, value, CAST(headers AS text) AS headers FROM outbox
WHERE {_WAITING} AND shard IN (SELECT shard FROM locked)
ORDER BY id
LIMIT :limit
FOR UPDATE OF outbox SKIP LOCKED"""
_CLAIM = text(_LOCKED.format(shards="generate_series(0, :n - 1)") + _CLAIMED)
# The rows of the given shards only (the ones a batch just wrote to), deleted as they are
# claimed (OutboxRelay.publish_all_or_none): the delete only holds if the transaction commits,
# after every acknowledgement. RETURNING's order is not the claim's: sorted by id again.
_CLAIM_DELETE = text(f"""{_LOCKED.format(shards="unnest(CAST(:shards AS int[]))")},
claimed AS ({_CLAIMED})
DELETE FROM outbox o USING claimed c WHERE o.id = c.id
RETURNING o.id, o.topic, o.key, o.value, c.headers
""")
_PENDING = text(f"SELECT EXISTS (SELECT 1 FROM outbox WHERE {_WAITING})")
_COUNTS = text(f"SELECT (SELECT count(*) FROM outbox WHERE {_WAITING}),"
               " (SELECT count(*) FROM outbox WHERE failed_at IS NOT NULL)")


def _retriable(exc: BaseException) -> bool:
    """Worth another try (broker away, lost producer state) rather than quarantine."""
    return is_transient(exc) or isinstance(exc, PRODUCER_STATE_ERRORS)


class OutboxRelay:
    """Publishes one service schema's outbox."""

    def __init__(self, engine: AsyncEngine, producer: Producer, schema: str, *,
                 shards: int = 16, batch: int = 1000, poll_interval: float = 0.5,
                 retention_s: float = 3600.0, name: str | None = None):
        self.engine = engine
        self.producer = producer
        self.schema = schema
        self.shards = shards
        self.batch = batch
        self.poll_interval = poll_interval
        self.retention_s = retention_s
        self.name = name or schema
        # advisory lock namespace: stable per schema, so relays of one service contend
        self._lock_ns = zlib.crc32(f"outbox:{schema}".encode()) & 0x7FFFFFFF
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._listen_conn: AsyncConnection | None = None
        self._last_cleanup = 0.0
        self._header_cache: dict[str, list[tuple[str, bytes]]] = {}
        self._listen_raw: Any = None  # the asyncpg connection under _listen_conn
        self._last_listen = 0.0
        self.published = 0
        # the cycles' connection: a pool checkout per cycle cost the pool's ping (three round
        # trips), more than the cycle's own four (BEGIN, claim, DELETE, COMMIT)
        self._kept = KeptConnection(engine)
        self._retry_soon = min(0.05, poll_interval)

    async def run(self) -> None:
        """Publish until :meth:`stop` is called."""
        try:
            await self._run()
        finally:
            await self._unlisten()
            await self.close()

    async def _run(self) -> None:
        await self._listen()
        backoff = Backoff()
        while not self._stopping.is_set():
            # cleared before the cycle, never after it: a NOTIFY for rows committed while the
            # cycle ran must cut the next sleep short (clearing it afterwards lost it, and those
            # rows waited for the next commit or the poll interval)
            self._wake.clear()
            try:
                sent = await self.publish_once()
                backoff.reset()
            except Exception as exc:
                if isinstance(exc, PRODUCER_STATE_ERRORS):
                    await self.producer.rebuild()
                elif not is_transient(exc):
                    log.exception("outbox relay cycle failed", extra={"relay": self.name})
                else:
                    log.warning("outbox relay: transient error, backing off",
                                extra={"relay": self.name, "error": repr(exc)})
                await self._sleep(backoff.next_delay())
                await self._relisten()
                continue
            if sent < self.batch:
                await self._relisten()
                try:
                    await self._maintain()
                    # nothing claimed while rows wait: another relay held their shards (a
                    # consumer's inline cycle, as a NOTIFY came): look again soon, not after a
                    # whole poll interval
                    again = (self._retry_soon if sent == 0 and await self._pending()
                             else self.poll_interval)
                except Exception as exc:  # housekeeping only: never ends the relay
                    log.warning("outbox housekeeping failed",
                                extra={"relay": self.name, "error": repr(exc)})
                    again = self.poll_interval
                await self._sleep(again, wakeable=True)

    async def close(self) -> None:
        """Give back the connection the cycles keep (``run`` does this when it ends; a caller
        of :meth:`publish_once` does it when done)."""
        await self._kept.close()

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def publish_once(self) -> int:
        """One claim-publish-delete cycle; returns how many rows it published."""
        async with self._kept.begin() as conn:
            rows = (await conn.execute(_CLAIM, {"n": self.shards, "ns": self._lock_ns,
                                                "limit": self.batch})).all()
            if not rows:
                return 0
            outcomes = await self._send_all(rows)
            sent = [row for row, out in zip(rows, outcomes, strict=True) if out is None]
            refused = [(row, out) for row, out in zip(rows, outcomes, strict=True)
                       if isinstance(out, BaseException) and not _retriable(out)]
            # deleted, not marked sent: an UPDATE copies the whole row (value included) into a
            # new version with new index entries, about 15 us of PostgreSQL per row against
            # 1 us for the DELETE, and kept rows grew the table by gigabytes an hour at load.
            # Kafka holds what was published; the evidence lives in the services' own tables.
            await conn.execute(text("DELETE FROM outbox WHERE id = ANY(CAST(:ids AS bigint[]))"),
                               {"ids": [r.id for r in sent]})
            for row, exc in refused:
                # the broker will never take it (too large, invalid topic...): set it aside for
                # an operator instead of blocking the rows behind it for ever
                await conn.execute(text("UPDATE outbox SET failed_at = now(), last_error = :e "
                                        "WHERE id = :id"), {"id": row.id, "e": repr(exc)[:500]})
                log.error("outbox row refused by the broker; quarantined",
                          extra={"relay": self.name, "outbox_id": row.id, "topic": row.topic,
                                 "error": repr(exc)})
        self._count_published(sent)
        failed = [out for out in outcomes if isinstance(out, BaseException)
                  and _retriable(out)]
        if failed:
            # what was published is deleted; the rest goes again after backoff. A lost producer
            # state first, whatever came before it: only it makes run() rebuild the producer
            stuck = [out for out in failed if isinstance(out, PRODUCER_STATE_ERRORS)]
            raise (stuck or failed)[0]
        return len(rows)

    async def publish_all_or_none(self, shards: Sequence[int]) -> set[int]:
        """A cycle over ``shards`` in three round trips instead of four: the claim deletes the
        rows, and the transaction commits only if the broker acknowledged every one of them.
        Otherwise it rolls back and raises, and every row stays for :meth:`publish_once` (which
        sets aside what the broker refuses), those acknowledged already included: they go
        again, and downstream inboxes drop the copies. Returns the ids it published."""
        async with self._kept.begin() as conn:
            rows = sorted((await conn.execute(_CLAIM_DELETE, {
                "shards": list(shards), "ns": self._lock_ns, "limit": self.batch})).all(),
                key=itemgetter(0))  # by id
            if not rows:
                return set()
            failed = [out for out in await self._send_all(rows) if out is not None]
            if failed:
                # a lost producer state first, whatever came before it: only it makes the
                # caller rebuild the producer
                stuck = [out for out in failed if isinstance(out, PRODUCER_STATE_ERRORS)]
                raise (stuck or failed)[0]  # rolls the deletes back
        self._count_published(rows)
        return {row[0] for row in rows}

    def _count_published(self, rows: Sequence[Any]) -> None:
        for topic, count in Counter(row[1] for row in rows).items():
            OUTBOX_PUBLISHED.labels(self.name, topic).inc(count)
        self.published += len(rows)

    async def _send_all(self, rows: Sequence[Any]) -> list[BaseException | None]:
        """Enqueue every row, then await every acknowledgement; one outcome per row
        (None when the broker acknowledged it).

        A topic's rows go as whole record batches (``Producer.send_many``: each key to the
        partition ``send`` would pick, in row order), a fraction of the CPU of one ``send``
        per row. A batch the broker refuses for good (a record too large...) is sent again one
        row at a time, so that only the culprit is quarantined, not its batch-mates.
        """
        # one pass over the rows (id, topic, key, value, headers): a topic's indexes, records
        # and headers; the driver gives bytea as bytes
        by_topic: dict[str, tuple[list[int], list[tuple[bytes | None, bytes]],
                                  list[list[tuple[str, bytes]]]]] = {}
        headers_of = self._headers
        for index, (_, topic, key, value, stored) in enumerate(rows):
            found = by_topic.get(topic)
            if found is None:
                found = by_topic[topic] = ([], [], [])
            found[0].append(index)
            found[1].append((key, value))
            found[2].append(headers_of(stored))
        batches: list[tuple[list[int], asyncio.Future]] = []
        outcomes: list[BaseException | None] = [None] * len(rows)
        for topic, (indexes, records, headers) in by_topic.items():
            try:
                sent = await self.producer.send_many(topic, records, record_headers=headers)
            except Exception as exc:  # no client at all (broker away): every row of the topic
                for i in indexes:
                    outcomes[i] = exc
                continue
            batches += [([indexes[m] for m in members], fut) for members, fut in sent]
        alone: list[int] = []
        for members, fut in batches:
            try:
                await fut
            except Exception as exc:
                if len(members) > 1 and not _retriable(exc):
                    alone += members
                    continue
                for i in members:
                    outcomes[i] = exc
        for i, outcome in zip(alone, await self._send_each([rows[i] for i in alone]),
                              strict=True):
            outcomes[i] = outcome
        return outcomes

    async def _send_each(self, rows: Sequence[Any]) -> list[BaseException | None]:
        """Each row in a record batch of its own, one after the other; one outcome per row.

        Not ``send``: aiokafka's ``send`` appends to the partition's open batch, so rows sent
        one after another would travel together again and be refused together (all of them
        quarantined). One at a time: after a failure worth retrying, the rows behind it are
        not sent (they go again with it), so none overtakes it.
        """
        outcomes: list[BaseException | None] = [None] * len(rows)
        for n, row in enumerate(rows):
            try:
                [(_, fut)] = await self.producer.send_many(
                    row.topic, [(bytes(row.key) if row.key is not None else None,
                                 bytes(row.value))],
                    record_headers=[self._headers(row.headers)])
                await fut
            except Exception as exc:
                outcomes[n] = exc
                if _retriable(exc):
                    outcomes[n + 1:] = [exc] * (len(rows) - n - 1)
                    break
        return outcomes

    def _headers(self, stored: str | None) -> list[tuple[str, bytes]]:
        """Kafka headers from the row's JSON text; rows of one kind share identical text, so
        each distinct text is decoded once per relay (a few kinds: events, dead letters...)."""
        if not stored:
            return []
        found = self._header_cache.get(stored)
        if found is None:
            found = [(k, str(v).encode()) for k, v in orjson.loads(stored).items()]
            if len(self._header_cache) >= 1024:  # dead letters' headers are all different
                self._header_cache.clear()
            self._header_cache[stored] = found
        return found

    async def _pending(self) -> bool:
        async with self._kept.begin() as conn:
            return bool((await conn.execute(_PENDING)).scalar())

    async def backlog(self) -> int:
        return (await self.counts())[0]

    async def counts(self) -> tuple[int, int]:
        """Rows waiting to be published, and rows quarantined (set aside for an operator).
        Each counted on its partial index, never the table: the outbox is mostly dead rows
        between autovacuums, and a scan of it every few seconds in each service cost the
        stack 40-200 ms of a core each time under load."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(_COUNTS)).one()
        return int(row[0]), int(row[1])

    async def _maintain(self) -> None:
        """Every few seconds: update the backlog and quarantine gauges and delete rows sent
        long ago (rows marked sent by relays of earlier versions, which kept them for
        ``retention_s``)."""
        now = time.monotonic()
        if now - self._last_cleanup < 5.0:
            return
        self._last_cleanup = now
        waiting, quarantined = await self.counts()
        OUTBOX_BACKLOG.labels(self.name).set(waiting)
        OUTBOX_QUARANTINED.labels(self.name).set(quarantined)
        async with self.engine.begin() as conn:
            await conn.execute(
                text("DELETE FROM outbox WHERE sent_at < now() - make_interval(secs => :s)"),
                {"s": self.retention_s})

    async def _sleep(self, seconds: float, wakeable: bool = False) -> None:
        waiter = self._wake if wakeable else self._stopping
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter.wait(), timeout=seconds)

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    async def _listen(self) -> None:
        self._last_listen = time.monotonic()
        try:
            conn = await self.engine.connect()
            raw = await conn.get_raw_connection()
            await raw.driver_connection.add_listener(  # type: ignore[union-attr]
                notify_channel(self.schema), self._on_notify)
            self._listen_conn, self._listen_raw = conn, raw.driver_connection
        except Exception as exc:  # polling still works without notifications
            log.warning("outbox relay: LISTEN failed, polling only",
                        extra={"relay": self.name, "error": repr(exc)})
            self._listen_conn = self._listen_raw = None

    async def _relisten(self) -> None:
        """LISTEN again when the listening connection is gone (PostgreSQL restarted, the
        connection was cut): without it the relay would only poll. At most every 5 s."""
        if self._listen_raw is not None and not self._listen_raw.is_closed():
            return
        if time.monotonic() - self._last_listen < 5.0:
            return
        await self._unlisten()
        await self._listen()

    async def _unlisten(self) -> None:
        if self._listen_conn is not None:
            with contextlib.suppress(Exception):
                await self._listen_conn.close()
            self._listen_conn = self._listen_raw = None


class InlineRelay:
    """Publishes what a consumer's batch wrote to the outbox from the consumer's own event loop,
    right after the batch commits: a relay cycle over the shards the batch wrote to
    (:meth:`OutboxRelay.publish_all_or_none`: the same shard locks, claim and acknowledgements
    as the relay thread's, the delete in the claim), started by the commit itself.

    The relay thread learns of a commit by ``NOTIFY`` and then needs the interpreter lock for
    each step of its cycle, which the consumer, computing its next batch, hands over only every
    switch interval (5 ms). Here the cycle is a task on the consumer's loop: it runs while the
    consumer reads its next batch, and on alongside that batch's transaction (on a connection
    of its own) if it is not done by then. One cycle at a time; rows committed meanwhile go in
    the next.

    Only small batches (``ConsumerRunner`` decides, ``RunnerConfig.inline_publish_max``): a
    backlog's large batches leave publishing to the relay thread, on the other core, as before.
    Rows of the batch this cycle did not publish (a failure, a shard whose lock another relay
    held) go to the relay thread (``fallback``, woken then). A cycle also takes older rows
    waiting in the same shards, ahead of the batch's, as any relay would. Crash safety is the
    relay's: a cycle is one transaction, and rows committed just before a crash are the relay
    thread's first cycle's after the restart.
    """

    def __init__(self, relay: OutboxRelay, fallback: Callable[[], None]) -> None:
        self.relay = relay
        self.fallback = fallback
        self._waiting: dict[int, int] = {}  # id -> shard, committed since the running claim
        self._task: asyncio.Task[None] | None = None

    def kick(self, written: Sequence[tuple[int, int]]) -> None:
        """Rows ``(id, shard)`` were just committed without ``NOTIFY``: publish them."""
        self._waiting.update(written)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._cycles(), name=f"{self.relay.name}:inline")

    async def settle(self, timeout: float | None = None) -> None:
        """Wait for the cycles started so far (they never raise), at most ``timeout`` seconds:
        a cycle still running then is left to finish or be cancelled with the loop, its
        transaction rolled back."""
        if self._task is not None and not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout)

    async def close(self, timeout: float = 10.0) -> None:
        await self.settle(timeout)
        with contextlib.suppress(Exception):
            await self.relay.close()

    async def _cycles(self) -> None:
        while self._waiting:
            waiting, self._waiting = self._waiting, {}
            try:
                published = await self.relay.publish_all_or_none(sorted(set(waiting.values())))
            except Exception as exc:
                self._waiting.clear()  # every row is the relay thread's now
                OUTBOX_INLINE_LEFT.labels(self.relay.name, "failed").inc()
                self.fallback()
                log.warning("inline outbox publication failed; left to the relay",
                            extra={"relay": self.relay.name, "error": repr(exc)})
                if isinstance(exc, PRODUCER_STATE_ERRORS):
                    with contextlib.suppress(Exception):
                        await self.relay.producer.rebuild()
                return
            if not published.issuperset(waiting):
                OUTBOX_INLINE_LEFT.labels(self.relay.name, "locked").inc()
                self.fallback()


# The outbox is a queue: rows inserted and deleted all day, so it holds thousands of dead rows
# between two autovacuums, and the planner's row counts are a guess. A bitmap scan of the
# pending index (what it picked for the claim once a run had settled) visits every dead row's
# page on every cycle and leaves the index as it was: 75 ms a claim at 1,000 events/s, the
# relay behind and PostgreSQL's CPU per event up half. A plain index scan marks the index
# entries of dead rows it meets, so the next claim skips them: the relay's own sessions plan
# without bitmap or sequential scans (its statements all have an index to use). Nor JIT:
# "off" only prices those scans at 10^10, so a statement that found no index would pass every
# JIT threshold and spend 100 ms or more compiling a scan of a few milliseconds (as the
# backlog count did, EXPLAIN ANALYZE on the dev stack's notifier outbox: JIT 118 ms, scan 7).
RELAY_SESSION_SETTINGS = {"enable_bitmapscan": "off", "enable_seqscan": "off", "jit": "off"}


class RelayThread:
    """An :class:`OutboxRelay` on a thread of its own, with its own event loop, engine and
    producer: how the services run their relay.

    In the consumer's event loop, each step of a relay cycle (claim, send, acknowledgement,
    delete, commit) waited for whatever stretch of a batch held the loop, and a decision took
    tens of milliseconds more to reach Kafka under load. On its own thread the relay waits
    for the interpreter lock instead, which a busy thread hands over every few milliseconds
    (``sys.getswitchinterval``), and mostly waits on sockets, which hold no lock at all.
    """

    def __init__(self, database_url: str, schema: str, bootstrap: str, *, name: str,
                 shards: int = 16, batch: int = 1000, poll_interval: float = 0.5) -> None:
        self.database_url = database_url
        self.schema = schema
        self.bootstrap = bootstrap
        self.name = name
        self.shards, self.batch, self.poll_interval = shards, batch, poll_interval
        self.relay: OutboxRelay | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._failure: BaseException | None = None

    async def start(self) -> None:
        """Start the thread; returns once its relay runs (or raises what stopped it)."""
        self._thread = threading.Thread(target=self._main, name=f"{self.name}-relay",
                                        daemon=True)
        self._thread.start()
        await asyncio.to_thread(self._started.wait)
        if self._failure is not None:
            raise self._failure

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        """Start the relay's next cycle now (from any thread): rows were committed that no
        ``NOTIFY`` announced (:class:`InlineRelay` left them)."""
        loop, relay = self._loop, self.relay
        if loop is not None and relay is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(relay._wake.set)

    async def stop(self, timeout: float = 20.0) -> None:
        """Let the relay finish its cycle, then close its producer and engine."""
        loop, relay, thread = self._loop, self.relay, self._thread
        if loop is not None and relay is not None and thread is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                asyncio.run_coroutine_threadsafe(relay.stop(), loop)
        if thread is not None:
            await asyncio.to_thread(thread.join, timeout)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by start(), or logged
            if not self._started.is_set():
                self._failure = exc
            else:
                log.exception("outbox relay thread ended with an error",
                              extra={"relay": self.name})
        finally:
            self._started.set()

    async def _run(self) -> None:
        engine = make_engine(self.database_url, self.schema, pool_size=2,
                             settings=RELAY_SESSION_SETTINGS)
        producer = make_producer(self.bootstrap, client_id=f"{self.name}-relay")
        try:
            await producer.start()
            self.relay = OutboxRelay(engine, producer, self.schema, name=self.name,
                                     shards=self.shards, batch=self.batch,
                                     poll_interval=self.poll_interval)
            self._loop = asyncio.get_running_loop()
            self._started.set()
            await self.relay.run()
        finally:
            with contextlib.suppress(Exception):
                await producer.stop()
            await engine.dispose()
