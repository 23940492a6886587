"""The one consumer loop of the project.

A service supplies a :class:`ConsumerSpec` (its handler table and optional batch hooks); the
runner does the rest:

1. ``getmany`` a batch; parse every message into a CloudEvent: the usual ones in one
   pydantic-core call (:class:`shared.events.native.BulkParser`), the rest, and all poison,
   by :func:`shared.events.parse_event`, which names what is wrong; of a type the service does
   not handle, only the envelope is checked. A batch with nothing to apply or dead-letter
   opens no transaction. Behind a backlog, the next batch is read and parsed while this
   one's statements run (never applied before this one has committed).
2. Open one transaction. Claim the batch's ``(source, id)`` pairs in the inbox: duplicates and
   already-applied events drop out. Run each remaining event's handler in order.
3. A poison message (bad JSON, not a CloudEvent, unknown type, schema error, a handler's
   :class:`Rejected` or an unexpected exception) is taken out and the batch is applied again
   without it, so nothing it half-wrote survives. Poison is queued for ``<topic>.dlq`` through
   the outbox, with the reason in headers, in the same transaction.
4. Commit the transaction, then commit each partition's offset (last + 1).

A crash between the two commits redelivers the batch; the inbox makes the second delivery a
no-op. Transient database or Kafka errors retry the same batch with backoff. A failure in a
batch hook that cannot be pinned on one message makes the runner apply that batch one message
per transaction, which finds the culprit; a culprit whose ``(source, id)`` the inbox cannot even
store is dead-lettered under its Kafka position (:func:`synthetic_key`). On rebalance the
revocation waits for the batch in flight. ``stop()`` (called on SIGTERM by the service)
finishes the current batch and leaves the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import inbox, outbox
from shared.context import BatchContext, Rejected
from shared.db import KeptConnection
from shared.events import Event, EventError, check_envelope, parse_event, registry
from shared.events.native import BulkParser
from shared.gc_tuning import tune_gc
from shared.metrics import (
    BATCH_SECONDS,
    BATCH_SIZE,
    CONSUMER_LAG,
    EVENTS_CONSUMED,
    EVENTS_DEAD_LETTERED,
    EVENTS_DUPLICATE,
    EVENTS_FAILED,
)
from shared.relay import InlineRelay
from shared.topics import TopicNames, dlq
from shared.transient import Backoff, is_transient

log = logging.getLogger("qingshou.consumer")

Handler = Callable[[BatchContext, Event], Awaitable[None]]
BeforeBatch = Callable[[BatchContext, list[Event]], Awaitable[None]]
AfterBatch = Callable[[BatchContext], Awaitable[None]]


@dataclass
class ConsumerSpec:
    """What a service consumes and how it handles each event type.

    ``topics`` are unprefixed names. Types in the registry but not in ``handlers`` are skipped
    (a service reads only what concerns it); types unknown to the registry are poison. A skipped
    type's envelope is still checked (what is not JSON or not a CloudEvent is poison for every
    consumer of the topic), but not its data: a ``schema_error`` is dead-lettered by the
    consumers that handle the type, and the others pass over the message without parsing it.
    """

    name: str
    topics: Sequence[str]
    handlers: Mapping[str, Handler]
    before_batch: BeforeBatch | None = None
    after_batch: AfterBatch | None = None


@dataclass
class RunnerConfig:
    """How the runner reads Kafka and writes its schema.

    Latency (measured for issue 7, aiokafka 0.14 on Kafka 4.4). aiokafka keeps one fetch in
    flight per broker and leaves out of it every partition that still has records waiting for
    ``getmany``. A consumer of several topics, some quiet, therefore used to send, while it
    applied a batch, a fetch naming only the quiet partitions (the busy ones' records were
    buffered); the broker held that fetch for ``fetch_max_wait_ms`` (500 ms by default) and
    nothing else could be fetched meanwhile: the stack's notifier sat idle in ``getmany`` for up
    to half a second while events waited on the broker. Three settings remove it:

    - ``prefetch_hold_s``: after a fetch brought records, no other fetch goes to that broker
      until they are taken or this long has passed (aiokafka's private ``prefetch_backoff``,
      0.1 s, which it does not expose). The runner takes everything buffered on each poll, so
      the next fetch names every partition.
    - ``top_up_ms``: records that were already buffered when ``getmany`` was called were
      fetched while the last batch was applied and are as old as that batch; taking them sends
      a fresh fetch, and the runner waits up to this long for its answer and adds it to the
      batch, so a batch holds what the broker had when it started rather than one producer
      request of it.
    - ``fetch_max_wait_ms``: how long the broker may hold a fetch with nothing to answer
      (100 ms): the bound on what a fetch naming the wrong partitions can still cost.

    ``read_ahead_from``: a batch this large means a backlog, and the next batch is read and
    parsed while it is applied (:meth:`ConsumerRunner.run`): 6 % more events/s in the runner
    benchmark. Not under it: at 1,000 events/s through the stack, reading ahead split what
    arrived over more, smaller batches and the notifier's p99 latency rose from 241-267 ms to
    352-466 ms (A/B on the same stack). A consumer whose ``max_records`` is below it never
    reads ahead.

    ``inline_publish_max``: with an :class:`~shared.relay.InlineRelay` given to the runner, a
    batch that wrote between 1 and this many outbox rows publishes them itself once committed,
    while it fetches the next batch, instead of waking the relay thread; a larger one (a
    backlog) leaves them to the relay thread, on the other core.

    ``skipped_commit_interval_s``: the position past a batch that held only types this consumer
    skips is committed with the next batch that writes, or after this long: an offset commit
    per such batch was the largest cost of a consumer that skips most of a busy topic (staging
    and incentives under the notifier's ``instalment.upcoming``). A crash before it is
    committed redelivers only skipped messages, which are skipped again.
    """

    bootstrap: str
    group_id: str
    schema: str
    topics: TopicNames = field(default_factory=TopicNames)
    source: str = "urn:qingshou"
    max_records: int = 2000
    poll_timeout_ms: int = 200
    fetch_max_wait_ms: int = 100
    prefetch_hold_s: float = 2.0
    top_up_ms: int = 20
    skipped_commit_interval_s: float = 1.0
    outbox_shards: int = 16
    client_id: str | None = None
    read_ahead_from: int = 1000
    inline_publish_max: int = 500


@dataclass(slots=True)
class _Item:
    record: ConsumerRecord
    key: inbox.InboxKey
    event: Event | None = None
    reason: str | None = None
    detail: str = ""


_GC_OBJECTS_PER_RECORD = 40  # see ConsumerRunner.start


@dataclass(slots=True)
class _Applied:
    """What one attempt at a batch applied, once its transaction has committed."""

    todo: list[_Item]  # applied by their handlers
    dead: list[_Item]  # dead-lettered now (not already from this position)
    duplicates: int  # copies skipped: in the batch, or already in the inbox
    written: list[tuple[int, int]]  # outbox rows to publish inline (id, shard)


@dataclass(slots=True)
class _Fetched:
    """A batch read from Kafka and parsed, with the revocation count when it was read."""

    batches: dict[TopicPartition, list[ConsumerRecord]]
    records: list[ConsumerRecord]
    items: list[_Item] | None  # None: to be parsed where it is applied
    revocations: int


class _Redo(Exception):
    """A message was found to be poison: apply the batch again without it."""


class _Unattributable(Exception):
    """A batch hook failed and no single message can be blamed yet."""


# a value orjson could not decode (parse_event says why from the bytes)
_NOT_JSON: Final = object()

# ``getmany`` back sooner than this found its records already buffered
_BUFFERED_S = 0.002

# records parsed between two looks at the batch being applied (about 10 ms of work)
_PARSE_CHUNK = 500


def hold_prefetch(consumer: AIOKafkaConsumer, seconds: float) -> bool:
    """Set how long buffered records keep aiokafka from fetching the broker's other
    partitions (see :class:`RunnerConfig`). aiokafka does not expose it: False, and the
    library's default stays, if a version no longer has the attribute."""
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is None or not hasattr(fetcher, "_prefetch_backoff"):
        log.warning("cannot set aiokafka's prefetch backoff; fetches may wait on quiet topics")
        return False
    fetcher._prefetch_backoff = seconds
    return True


def synthetic_key(record: ConsumerRecord) -> inbox.InboxKey:
    """An inbox key for a message whose own ``(source, id)`` cannot be read."""
    # the space makes it impossible for a real CloudEvent's source to collide with it
    return inbox.InboxKey(f"kafka: {record.topic}", f"{record.partition}:{record.offset}",
                          record.topic, record.partition, record.offset)


def _printable(text: str) -> str:
    """Header text as PostgreSQL jsonb accepts it (no NUL)."""
    return text.replace("\x00", "\\u0000")


class _Stopped(Exception):
    """Stop was requested while a batch waited to be retried: leave it uncommitted."""


class _Revocation(ConsumerRebalanceListener):
    def __init__(self, lock: asyncio.Lock, pending: dict[TopicPartition, int],
                 settle: Callable[[], Awaitable[None]]):
        self.lock = lock
        self.pending = pending
        self.settle = settle  # waits for an offset commit in flight
        self.count = 0  # revocations so far (ConsumerRunner._top_up)

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.count += 1
        # wait for the batch in flight to commit, and its offsets to land, before the
        # partitions move on (the next owner starts from there)
        async with self.lock:
            await self.settle()
            # positions past skipped messages only: the next owner skips them again
            for tp in revoked:
                self.pending.pop(tp, None)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned", extra={"partitions": sorted(str(tp) for tp in assigned)})


class ConsumerRunner:
    """Runs one :class:`ConsumerSpec` against Kafka and the service's schema."""

    def __init__(self, spec: ConsumerSpec, engine: AsyncEngine, config: RunnerConfig,
                 inline: InlineRelay | None = None):
        self.spec = spec
        self.inline = inline  # publishes small batches' outbox rows (RunnerConfig)
        self.engine = engine
        self.config = config
        self._consumer: AIOKafkaConsumer | None = None
        # known types this consumer does not handle: envelope checked, data left alone
        self._skipped = frozenset(t for t in registry.DEFAULT.type_names()
                                  if t not in spec.handlers)
        self._parser = BulkParser([t for t in registry.DEFAULT.type_names()
                                   if t in spec.handlers])
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self.applied = 0
        self.dead_lettered = 0
        # positions applied but not committed yet (RunnerConfig.skipped_commit_interval_s)
        self._pending: dict[TopicPartition, int] = {}
        self._last_commit = time.monotonic()
        self._wrote = False  # whether the batch being applied opened a transaction
        self._conn = KeptConnection(engine)  # a batch's transaction, without the pool's ping
        self._committing: asyncio.Task[None] | None = None  # an offset commit in flight
        self._revocation = _Revocation(self._lock, self._pending, self._commit_settled)
        self._fetch_backoff = Backoff()

    @property
    def consumer(self) -> AIOKafkaConsumer | None:
        return self._consumer

    async def start(self) -> None:
        cfg = self.config
        # The collector's young generation counts objects alive now (allocations less frees);
        # a full batch and the one read ahead hold some tens of objects a record (records,
        # parsed events, a service's domain values) until they end, so under 40 a record each
        # collection would only walk live objects and promote them (staging, 5,000 records:
        # 35 collections of ~17 ms per 200,000 events). Batches build no reference cycles
        # (the batch state is cleared: _apply_once), so above it the collector rarely runs.
        tune_gc(young=max(50_000, _GC_OBJECTS_PER_RECORD * cfg.max_records))
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=cfg.bootstrap,
            group_id=cfg.group_id,
            client_id=cfg.client_id or f"{self.spec.name}-consumer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=600_000,
            # a member learns of a rebalance (another instance joining or leaving) at its next
            # heartbeat, and the joining instance waits until every member has rejoined:
            # aiokafka's default of 3 s kept a newly started instance idle for about that long
            # (1 s: about a second, a sixth of staging's benchmark run). Four small requests a
            # second per member cost the broker nothing measurable.
            heartbeat_interval_ms=250,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_wait_ms=cfg.fetch_max_wait_ms,
        )
        await self._consumer.start()
        hold_prefetch(self._consumer, cfg.prefetch_hold_s)
        self._consumer.subscribe([cfg.topics.name(t) for t in self.spec.topics],
                                 listener=self._revocation)

    async def stop(self) -> None:
        """Ask the loop to finish its current batch and return."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until :meth:`stop`; never ends on a bad message or a transient error.

        Behind a backlog (a batch of ``read_ahead_from`` records or more), fetching and
        parsing run one batch ahead (:meth:`_fetch`, in a task): the next batch is read and
        parsed while this one's statements are in PostgreSQL, where the consumer would
        otherwise wait. Only the reading overlaps: a batch is applied, and its offsets
        committed, after the one before it has committed.
        """
        if self._consumer is None:
            await self.start()
        consumer = self._consumer
        assert consumer is not None
        ahead: asyncio.Task[_Fetched | None] | None = None
        try:
            while not self._stopping.is_set():
                read_ahead = ahead is not None
                fetched = await (ahead if ahead is not None else self._fetch(consumer))
                ahead = None
                if fetched is None:
                    if self._pending and self._commit_due():
                        async with self._lock:
                            await self._commit_pending()
                    continue
                if read_ahead:
                    # what came while it waited for the batch before: taken now, not a batch
                    # later (a batch holds what was there when the one before it committed)
                    await self._take_buffered(consumer, fetched)
                if (len(fetched.records) >= self.config.read_ahead_from
                        and not self._stopping.is_set()):
                    ahead = asyncio.create_task(self._fetch(consumer))
                async with self._lock:
                    if fetched.revocations != self._revocation.count:
                        # read before a rebalance: the partitions are read again from their
                        # committed offsets by whoever owns them now
                        self._log_dropped(fetched.records)
                        continue
                    started = time.perf_counter()
                    self._wrote = False
                    if not await self._apply_until_done(fetched.records, fetched.items):
                        break
                    for tp, recs in fetched.batches.items():
                        if recs:
                            self._pending[tp] = recs[-1].offset + 1
                    if self._wrote or self._commit_due():
                        await self._commit_pending(wait=False)
                    BATCH_SECONDS.labels(self.spec.name).observe(time.perf_counter() - started)
                    BATCH_SIZE.labels(self.spec.name).observe(len(fetched.records))
                    self._update_lag(fetched.batches)
        finally:
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ahead
            if self.inline is not None:
                await self.inline.settle(timeout=10.0)
            await self._close_connection()
            with contextlib.suppress(Exception):
                async with self._lock:  # a revocation meanwhile waits for these offsets
                    await self._commit_pending()
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _fetch(self, consumer: AIOKafkaConsumer, timeout_ms: int | None = None,
                     max_records: int | None = None) -> _Fetched | None:
        """The next batch, read and parsed; None if nothing came within the poll timeout (or
        the fetch failed, after a pause). Records that were buffered already get a top-up
        (:meth:`_top_up`); ``timeout_ms=0`` reads only those and their top-up."""
        asked = time.monotonic()
        wait = self.config.poll_timeout_ms if timeout_ms is None else timeout_ms
        limit = max_records or self.config.max_records
        try:
            batches = await consumer.getmany(timeout_ms=wait, max_records=limit)
        except KafkaError as exc:
            log.warning("fetch failed", extra={"error": repr(exc)})
            await self._pause(self._fetch_backoff.next_delay())
            return None
        self._fetch_backoff.reset()
        # the records were read under the assignment of now (aiokafka hands out none while a
        # rebalance is pending); one revoked later is read again from its committed offset,
        # so these must then not be applied
        revocations = self._revocation.count
        if batches and time.monotonic() - asked < _BUFFERED_S:
            revocations = await self._top_up(consumer, batches, revocations, limit)
        if not batches:
            return None
        records = [r for recs in batches.values() for r in recs]
        parsed: list[_Item] = []
        try:
            for n in range(0, len(records), _PARSE_CHUNK):
                if n:
                    await asyncio.sleep(0)  # let the batch being applied take its replies
                parsed += self._parse_all(records[n:n + _PARSE_CHUNK])
        except Exception:  # never expected: the batch is parsed again where failures retry
            log.exception("batch parse failed", extra={"consumer": self.spec.name})
            return _Fetched(batches, records, None, revocations)
        return _Fetched(batches, records, parsed, revocations)

    async def _take_buffered(self, consumer: AIOKafkaConsumer, fetched: _Fetched) -> None:
        """Add to ``fetched`` the records buffered since it was read, if any and if room."""
        room = self.config.max_records - len(fetched.records)
        more = await self._fetch(consumer, 0, room) if room > 0 else None
        if more is None:
            return
        if more.revocations != fetched.revocations:
            # a rebalance between the two reads: the first is read again, from its committed
            # offset, by whoever owns its partitions now
            self._log_dropped(fetched.records)
            fetched.batches, fetched.records = more.batches, more.records
            fetched.items, fetched.revocations = more.items, more.revocations
            return
        for tp, records in more.batches.items():
            fetched.batches.setdefault(tp, []).extend(records)
        fetched.records += more.records
        if fetched.items is not None and more.items is not None:
            fetched.items += more.items
        else:
            fetched.items = None

    def _log_dropped(self, records: list[ConsumerRecord]) -> None:
        log.info("partitions revoked since these records were read; records dropped",
                 extra={"consumer": self.spec.name, "records": len(records)})

    async def _top_up(self, consumer: AIOKafkaConsumer,
                      batches: dict[TopicPartition, list[ConsumerRecord]],
                      revocations: int, max_records: int) -> int:
        """Add to a batch of buffered (older) records what a fresh fetch brings within
        ``top_up_ms`` (see :class:`RunnerConfig`); the revocation count the batch now belongs
        to.

        If a rebalance revoked the partitions meanwhile (``revocations`` is the count when
        the batch was read), the records in hand are no longer this member's to apply (their
        partitions may be another's; if they are this member's again, it reads them from its
        committed offset) and are dropped. What the fetch returns then was read under the new
        assignment (aiokafka hands out nothing while one is pending: a fetch that wakes during
        a rebalance waits for the new assignment), so the batch is labelled with the count
        read right after it: labelled with the old one, it would be dropped too, and its
        records lost (their position is already past them).
        """
        room = max_records - sum(len(r) for r in batches.values())
        if room <= 0 or self.config.top_up_ms <= 0:
            return revocations
        try:
            more = await consumer.getmany(timeout_ms=self.config.top_up_ms, max_records=room)
        except KafkaError as exc:  # the records in hand go on (aiokafka drops the error)
            log.warning("fetch failed", extra={"error": repr(exc)})
            more = {}
        now = self._revocation.count
        if now != revocations:
            self._log_dropped([r for recs in batches.values() for r in recs])
            batches.clear()
        for tp, records in more.items():
            batches.setdefault(tp, []).extend(records)
        return now

    # -- one batch -------------------------------------------------------------------------

    async def _apply_until_done(self, records: list[ConsumerRecord],
                                items: list[_Item] | None = None) -> bool:
        """Apply a batch, retrying what cannot be blamed on a message; False if stopped.
        ``items``: the records already parsed (a retry parses them afresh)."""
        backoff = Backoff(first=0.5, ceiling=30.0)
        while True:
            try:
                await self._apply_batch(records, items)
                return True
            except _Stopped:
                return False
            except Exception:
                # not a message's fault (a broken hook, a schema missing): keep the position,
                # keep trying, never end the loop over it
                log.exception("batch failed; will retry", extra={"consumer": self.spec.name})
                items = None
                await self._pause(backoff.next_delay())
                if self._stopping.is_set():
                    return False

    async def _apply_batch(self, records: list[ConsumerRecord],
                           items: list[_Item] | None = None) -> None:
        if items is None:
            items = self._parse_all(records)
        try:
            await self._apply_with_retry(items)
        except _Unattributable:
            log.warning("batch hook failed; applying the batch one message at a time",
                        extra={"consumer": self.spec.name, "size": len(items)})
            for item in items:
                try:
                    await self._apply_with_retry([item])
                except _Unattributable as exc:
                    item.reason, item.detail = "handler_error", str(exc.__cause__ or exc)
                    try:
                        await self._apply_with_retry([item])
                    except _Unattributable:
                        # not even its dead-letter row can be written under its (source, id)
                        # (a row the database refuses for good): record it by Kafka position,
                        # which always fits, rather than retry the batch for ever
                        item.key = synthetic_key(item.record)
                        await self._apply_with_retry([item])

    def _parse_all(self, records: list[ConsumerRecord]) -> list[_Item]:
        """The batch's items: the usual messages parsed in one call (:class:`BulkParser`),
        the others one by one by ``parse_event``, which says what is wrong with them."""
        decoded: list[Any] = []
        for record in records:
            try:
                decoded.append(orjson.loads(record.value if record.value is not None else b""))
            except orjson.JSONDecodeError:
                decoded.append(_NOT_JSON)
        items = []
        for record, obj, got in zip(records, decoded, self._parser.parse(decoded), strict=True):
            if got is None:
                items.append(self._parse(record, obj))
                continue
            if isinstance(got, tuple):  # a type skipped here
                key = inbox.InboxKey(got[0], got[1], record.topic, record.partition,
                                     record.offset)
                items.append(_Item(record, key))
            else:
                key = inbox.InboxKey(got.source, got.id, record.topic, record.partition,
                                     record.offset)
                items.append(_Item(record, key, event=got))
        return items

    def _parse(self, record: ConsumerRecord, obj: Any) -> _Item:
        """An item with its event, or its poison reason, or neither (a type not handled here).
        ``obj`` is the decoded value, or ``_NOT_JSON``."""
        value = record.value if record.value is not None else b""
        try:
            if type(obj) is dict and obj.get("type") in self._skipped:
                _, source, event_id = check_envelope(obj)
                return _Item(record, inbox.InboxKey(source, event_id, record.topic,
                                                    record.partition, record.offset))
            event = parse_event(obj if type(obj) is dict else value)
        except EventError as exc:
            detail = orjson.dumps(exc.errors).decode() if exc.errors else str(exc)
            return _Item(record, synthetic_key(record), reason=exc.reason, detail=detail)
        key = inbox.InboxKey(event.source, event.id, record.topic, record.partition,
                             record.offset)
        return _Item(record, key, event=event)

    async def _apply_with_retry(self, items: list[_Item]) -> None:
        backoff = Backoff()
        while True:
            try:
                await self._apply_once(items)
                return
            except _Redo:
                continue
            except (_Unattributable, _Stopped):
                raise
            except Exception as exc:
                if not is_transient(exc):
                    raise _Unattributable(repr(exc)) from exc
                EVENTS_FAILED.labels(self.spec.name).inc()
                delay = backoff.next_delay()
                log.warning("transient failure; retrying the batch",
                            extra={"consumer": self.spec.name, "error": repr(exc),
                                   "retry_in_s": delay})
                await self._pause(delay)
                if self._stopping.is_set():
                    raise _Stopped() from exc

    async def _apply_once(self, items: list[_Item]) -> None:
        spec, cfg = self.spec, self.config
        if all(i.event is None and i.reason is None for i in items):
            return  # only types this consumer skips: no transaction, only the offsets move
        self._wrote = True
        async with self._conn.begin() as conn:
            ctx = BatchContext(conn, cfg.topics, cfg.source)
            try:
                done = await self._apply_in(ctx, items)
            finally:
                # the batch's scratch state may point back at the context (staging's Casework
                # does): a cycle, which held every loan, ledger and message of the batch until
                # the cyclic collector found it (a tenth of staging's CPU); cleared, it is all
                # freed by reference counting when the batch ends
                ctx.state.clear()
        # committed (a crash or a lost connection from here on leaves the rows to the relay
        # thread: its first cycle after a start, or its poll)
        if done.written and self.inline is not None:
            self.inline.kick(done.written)
        self.applied += len(done.todo)
        self.dead_lettered += len(done.dead)
        if done.duplicates:
            EVENTS_DUPLICATE.labels(spec.name).inc(done.duplicates)
        per_topic: dict[str, int] = {}
        for item in done.todo:
            per_topic[item.record.topic] = per_topic.get(item.record.topic, 0) + 1
        for topic, count in per_topic.items():
            EVENTS_CONSUMED.labels(spec.name, topic).inc(count)
        for item in done.dead:
            EVENTS_DEAD_LETTERED.labels(spec.name, item.record.topic, item.reason).inc()
            log.warning("dead-lettered", extra={
                "consumer": spec.name, "topic": item.record.topic, "reason": item.reason,
                "partition": item.record.partition, "offset": item.record.offset})

    async def _apply_in(self, ctx: BatchContext, items: list[_Item]) -> _Applied:
        """One attempt at a batch inside its transaction (``ctx.conn``): inbox, hooks and
        handlers, dead letters, outbox."""
        spec, cfg, conn = self.spec, self.config, ctx.conn
        wanted: list[_Item] = []
        seen: set[tuple[str, str]] = set()
        duplicates = 0
        for item in items:
            pair = (item.key.source, item.key.id)
            if item.reason is not None:
                # a later copy of a dead-lettered event is a duplicate: the event stays
                # dead until it is replayed, whichever copy came first
                seen.add(pair)
                continue
            if item.event is None:
                continue  # a type this consumer skips
            if pair in seen:
                duplicates += 1
                continue
            seen.add(pair)
            wanted.append(item)
        fresh = await inbox.claim(conn, spec.name, [i.key for i in wanted])
        todo = wanted if fresh is None else [
            i for i in wanted if (i.key.source, i.key.id) in fresh]
        duplicates += len(wanted) - len(todo)
        events = [i.event for i in todo if i.event is not None]
        try:
            if spec.before_batch is not None and todo:
                await spec.before_batch(ctx, events)
        except Exception as exc:
            if is_transient(exc):
                raise
            raise _Unattributable(repr(exc)) from exc
        for item in todo:
            await self._handle(ctx, item)
        try:
            if spec.after_batch is not None and todo:
                await spec.after_batch(ctx)
        except Exception as exc:
            if is_transient(exc):
                raise
            raise _Unattributable(repr(exc)) from exc
        dead = list({(i.key.source, i.key.id): i
                     for i in reversed(items) if i.reason is not None}.values())[::-1]
        dead = await self._drop_known_dead(conn, dead)
        await inbox.mark_dead(conn, spec.name, [i.key for i in dead])
        messages = ctx.outbox + [self._dead_letter(i) for i in dead]
        inline = self.inline is not None and 0 < len(messages) <= cfg.inline_publish_max
        written = await outbox.write(conn, messages, cfg.outbox_shards, cfg.schema,
                                     notify=not inline)
        return _Applied(todo, dead, duplicates, written)

    async def _handle(self, ctx: BatchContext, item: _Item) -> None:
        assert item.event is not None
        ctx.record = item.record
        try:
            await self.spec.handlers[item.event.type](ctx, item.event)
        except Rejected as rej:
            item.reason, item.detail = rej.reason, rej.detail
            raise _Redo() from rej
        except Exception as exc:
            if is_transient(exc):
                raise
            log.exception("handler failed", extra={
                "consumer": self.spec.name, "type": item.event.type, "event_id": item.event.id})
            item.reason, item.detail = "handler_error", repr(exc)
            raise _Redo() from exc

    async def _drop_known_dead(self, conn, dead: list[_Item]) -> list[_Item]:
        """Leave out poison already dead-lettered from this same position (a redelivery)."""
        known = await inbox.dead_already(conn, self.spec.name, [i.key for i in dead])
        return [i for i in dead if (i.key.source, i.key.id) not in known]

    def _dead_letter(self, item: _Item) -> outbox.OutboxMessage:
        rec = item.record
        headers = {
            "qs-reason": item.reason or "unknown",
            "qs-detail": _printable(item.detail[:2000]),
            "qs-consumer": self.spec.name,
            "qs-original-topic": rec.topic,
            "qs-original-partition": str(rec.partition),
            "qs-original-offset": str(rec.offset),
            "qs-dead-lettered-at": dt.datetime.now(dt.UTC).isoformat(),
        }
        for name, value in rec.headers or ():
            if not name.startswith("qs-"):
                headers.setdefault(_printable(name),
                                   _printable(value.decode("utf-8", "replace")) if value else "")
        return outbox.OutboxMessage(topic=dlq(rec.topic), key=rec.key,
                                    value=rec.value if rec.value is not None else b"",
                                    headers=headers)

    async def _close_connection(self) -> None:
        await self._conn.close()

    # -- offsets -----------------------------------------------------------------------------

    def _commit_due(self) -> bool:
        return time.monotonic() - self._last_commit >= self.config.skipped_commit_interval_s

    async def _commit_pending(self, wait: bool = True) -> None:
        """Commit every position applied so far (this batch's and skipped batches' before).

        ``wait=False`` (after a batch): the commit goes on in a task while the next batch is
        read and applied, its round trip to the broker off the batches' path. The offsets
        still go after the database commit, and in order: the next commit, a revocation and
        the end of the loop wait for the one in flight. A crash before it lands redelivers
        the batch, which the inbox turns into a no-op, as before.
        """
        await self._commit_settled()
        offsets = {tp: OffsetAndMetadata(offset, "") for tp, offset in self._pending.items()}
        self._pending.clear()
        self._last_commit = time.monotonic()
        if not offsets:
            return
        if wait:
            await self._commit_offsets(offsets)
        else:
            self._committing = asyncio.create_task(self._commit_offsets(offsets))

    async def _commit_settled(self) -> None:
        """Wait for the offset commit in flight, if any."""
        task, self._committing = self._committing, None
        if task is None:
            return
        try:
            await task
        except Exception:  # not a Kafka error (those are handled in the task): say so
            log.exception("offset commit failed; the batch will be redelivered and skipped",
                          extra={"consumer": self.spec.name})

    async def _commit_offsets(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        consumer = self._consumer
        assert consumer is not None
        backoff = Backoff()
        for _ in range(8):
            try:
                await consumer.commit(offsets)
                return
            except (CommitFailedError, IllegalStateError) as exc:
                # partitions moved during the batch: the new owner gets a redelivery and the
                # inbox turns it into a no-op
                log.info("offset commit skipped after rebalance", extra={"error": repr(exc)})
                return
            except KafkaError as exc:
                log.warning("offset commit failed; retrying", extra={"error": repr(exc)})
                await self._pause(backoff.next_delay())
        log.error("offset commit gave up; the batch will be redelivered and skipped")

    def _update_lag(self, batches: Mapping[TopicPartition, list[ConsumerRecord]]) -> None:
        consumer = self._consumer
        assert consumer is not None
        for tp, recs in batches.items():
            high = consumer.highwater(tp)
            if high is not None and recs:
                CONSUMER_LAG.labels(self.spec.name, tp.topic, str(tp.partition)).set(
                    max(0, high - recs[-1].offset - 1))

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)


__all__ = ["ConsumerRunner", "ConsumerSpec", "Handler", "Rejected", "RunnerConfig", "registry"]
