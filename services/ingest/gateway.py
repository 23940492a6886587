"""The gateway's core: validate items, authorise them by type, publish them, report each.

No FastAPI here: the HTTP layer (``api.py``) reads the body and turns outcomes into responses.
Each item ends in exactly one outcome: accepted (Kafka acknowledged, or a recent duplicate),
rejected (400/403/413/422: never sent) or failed (503: Kafka did not acknowledge; the client
retries, and a retry of an item that did get through is answered as a duplicate or dropped by
the consumers' inboxes).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from services.ingest.limits import DedupeCache
from services.ingest.routing import NotAccepted, Router
from shared.auth import Principal
from shared.events import EventError, parse_event
from shared.kafka import PRODUCER_STATE_ERRORS, Producer

log = logging.getLogger("qingshou.ingest")

HEADERS: Final = [("content-type", b"application/cloudevents+json")]

# From this many items of one topic in a request on, they go as whole record batches.
RECORD_BATCHES_FROM: Final = 32

TITLES: Final = {400: "Bad request", 403: "Forbidden", 413: "Payload too large",
                 422: "Unprocessable content", 503: "Service unavailable"}


@dataclass(slots=True)
class Item:
    """One posted event on its way through the gateway."""

    index: int
    status: int = 0  # 0 while undecided; then 202, 400, 403, 413, 422 or 503
    event_id: str | None = None
    source: str | None = None
    event_type: str | None = None
    topic: str = ""
    base_topic: str = ""
    key: bytes = b""
    value: bytes = b""
    duplicate: bool = False
    detail: str = ""
    errors: list[dict[str, str]] | None = None  # set when rejected

    def reject(self, status: int, detail: str, errors: list[dict[str, str]]) -> Item:
        self.status, self.detail, self.errors = status, detail, errors
        return self

    def result(self) -> dict[str, Any]:
        """The per-item entry of a batch response."""
        out: dict[str, Any] = {"index": self.index, "status": self.status,
                               "id": self.event_id, "source": self.source}
        if self.status == 202:
            out["topic"] = self.base_topic
            out["duplicate"] = self.duplicate
        else:
            out["title"] = TITLES.get(self.status, "Error")
            out["detail"] = self.detail
            if self.errors:
                out["errors"] = self.errors
        return out


def _summary(err: EventError) -> str:
    fields = ", ".join(dict.fromkeys(e["field"] or "(body)" for e in err.errors))
    return f"{err.reason}: {fields}"


def check(item: Item, obj: Any, who: Principal, router: Router, raw: bytes | None) -> Item:
    """Validate and authorise one decoded item; fills topic, key and value, or rejects it.

    The type is looked at before the data is validated, so a key without the type's scope
    learns nothing about the payload (403 before 422). ``raw`` is the posted bytes of a single
    event, published unchanged; a batch item (``None``) is re-encoded from its decoded form.
    """
    if not isinstance(obj, dict):
        return item.reject(422, "not_cloudevent: a CloudEvent must be a JSON object",
                           [{"field": "", "message": "a CloudEvent must be a JSON object"}])
    raw_id, raw_source, raw_type = obj.get("id"), obj.get("source"), obj.get("type")
    item.event_id = raw_id if isinstance(raw_id, str) else None
    item.source = raw_source if isinstance(raw_source, str) else None
    if isinstance(raw_type, str):
        item.event_type = raw_type
        try:
            item.topic, item.base_topic, scope = router.resolve(raw_type)
        except NotAccepted as exc:
            return item.reject(422, f"unknown_type: {exc}",
                               [{"field": "type", "message": str(exc)}])
        if not who.allows(scope):
            msg = f"the API key lacks the scope '{scope}' needed for {raw_type!r}"
            return item.reject(403, msg, [{"field": "type", "message": msg}])
    try:
        event = parse_event(obj)
    except EventError as err:
        return item.reject(422, _summary(err), err.errors)
    item.key = event.key
    item.value = raw if raw is not None else orjson.dumps(obj)
    return item


def vouched(index: int, obj: dict[str, Any], who: Principal, router: Router,
            limit: int) -> Item:
    """A batch item that a :class:`shared.events.bulk.BulkChecker` found valid: what ``check``
    and ``limit_size`` would make of it, without asking again what the checker answered
    (a dict, a known inbound type, string attributes)."""
    event_type = obj["type"]
    topic, base, scope = router.resolve(event_type)
    if scope not in who.scopes:
        return check(Item(index=index), obj, who, router, None)  # its 403
    value = orjson.dumps(obj)
    item = Item(index, 0, obj["id"], obj["source"], event_type, topic, base,
                obj["subject"].encode(), value)
    return limit_size(item, limit) if len(value) > limit else item


def limit_size(item: Item, limit: int) -> Item:
    """Refuse (413) a checked batch item whose published bytes exceed the per-event limit.

    A single event is measured by its body before it is read; a batch item only by the
    compact JSON it is published as. Without this, a batch smuggled events of any size up to
    the batch limit past the per-event one, and one above the broker's message size came back
    as a 503 that no retry could ever turn into a 202.
    """
    if item.status == 0 and len(item.value) > limit:
        msg = f"the event is {len(item.value)} bytes, at most {limit}"
        return item.reject(413, f"the event is larger than {limit} bytes",
                           [{"field": "", "message": msg}])
    return item


def decode_error(item: Item, exc: Exception) -> Item:
    """A body that is not JSON at all."""
    return item.reject(400, "invalid_json: the body is not JSON",
                       [{"field": "", "message": str(exc)}])


def pair_key(source: str, event_id: str) -> bytes:
    """The fixed-size key under which ``(source, id)`` is remembered and matched.

    Remembering the pair itself made the dedupe cache's memory grow with the posted sources
    and ids (gigabytes at 100,000 entries while ``source`` had no length limit; still hundreds
    of megabytes for long non-ASCII ones); a 128-bit digest keeps every entry the same small
    size, so the cache's memory is bounded by its capacity alone. The NUL separator cannot
    occur in an id or a source, so distinct pairs never join the same.
    """
    return hashlib.blake2b(f"{source}\0{event_id}".encode(), digest_size=16).digest()


class KafkaDown(Exception):
    """The producer is not connected (the gateway started while Kafka was unreachable)."""


class Publisher:
    """Sends checked items to Kafka and waits for every acknowledgement.

    Items of one request are all handed to the producer before any acknowledgement is awaited,
    so one request costs one round of broker batches, not one round trip per event. A topic's
    share of a large request goes as whole record batches (``send_many``); a few items go
    through ``send``, which lets concurrent small requests share the producer's batches. A pair
    ``(source, id)`` accepted recently is not sent again; a pair being sent right now by
    another request waits for that send and shares its outcome.
    """

    def __init__(self, producer: Callable[[], Producer], connected: Callable[[], bool],
                 dedupe: DedupeCache, clock: Callable[[], float] = time.monotonic) -> None:
        self._producer = producer
        self._connected = connected
        self._dedupe = dedupe
        self._clock = clock
        # pair -> the future of the publish() sending it, whose result maps pairs to items
        self._inflight: dict[bytes, asyncio.Future[dict[bytes, Item]]] = {}

    async def publish(self, items: list[Item]) -> None:
        """Decide every checked item (status 0) as 202 or 503."""
        now = self._clock()
        sending: dict[bytes, Item] = {}
        waits: list[tuple[Item, bytes, asyncio.Future[dict[bytes, Item]]]]
        waits = []
        done = asyncio.get_running_loop().create_future()  # one per call, not per item
        inflight = self._inflight
        todo = [item for item in items if not item.status]
        pairs = [pair_key(item.source or "", item.event_id or "") for item in todo]
        for item, pair, repeat in zip(todo, pairs, self._dedupe.seen_many(pairs, now),
                                      strict=True):
            if repeat:
                item.status, item.duplicate = 202, True
                continue
            pending = inflight.get(pair)
            if pending is not None:
                waits.append((item, pair, pending))
                continue
            inflight[pair] = done
            sending[pair] = item
        try:
            if sending:
                await self._send_all(list(sending.values()))
        finally:
            self._dedupe.add_many([pair for pair, item in sending.items() if item.status == 202],
                                  self._clock())
            for pair in sending:
                del inflight[pair]
            done.set_result(sending)
        for item, pair, pending in waits:
            # the same pair earlier in this very request, or in another request
            outcome = sending if pending is done else await asyncio.shield(pending)
            ok = outcome[pair].status == 202
            item.status, item.duplicate = (202, True) if ok else (503, False)
            if not ok:
                item.detail = "Kafka did not acknowledge the event; retry later"

    async def _send_all(self, sends: list[Item]) -> None:
        if not self._connected():
            for item in sends:
                self._fail(item, KafkaDown("Kafka is unreachable"))
            return
        producer = self._producer()
        by_topic: dict[str, list[Item]] = {}
        for item in sends:
            by_topic.setdefault(item.topic, []).append(item)
        pending: list[tuple[list[Item], asyncio.Future[Any]]] = []
        for topic, group in by_topic.items():
            if len(group) >= RECORD_BATCHES_FROM:
                await self._enqueue_many(producer, topic, group, pending)
                continue
            for item in group:
                try:
                    fut = await producer.send(topic, value=item.value, key=item.key,
                                              headers=HEADERS)
                except Exception as exc:
                    self._fail(item, exc)
                    continue
                pending.append(([item], fut))
        # every future is awaited, so nothing is left half-known when the response is written
        outcomes = await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
        for (group, _), outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                for item in group:
                    self._fail(item, outcome)
            else:
                for item in group:
                    item.status = 202
        if any(isinstance(o, PRODUCER_STATE_ERRORS) for o in outcomes):
            await producer.rebuild()  # a lost producer id only heals with a new producer
        failed = [item for item in sends if item.status == 503]
        if failed:
            log.warning("Kafka did not acknowledge %d of %d events", len(failed), len(sends),
                        extra={"error": failed[0].detail})

    async def _enqueue_many(self, producer: Producer, topic: str, group: list[Item],
                            pending: list[tuple[list[Item], asyncio.Future[Any]]]) -> None:
        try:
            batches = await producer.send_many(topic, [(i.key, i.value) for i in group],
                                               HEADERS)
        except Exception as exc:  # nothing of the group was enqueued
            for item in group:
                self._fail(item, exc)
            return
        for indexes, fut in batches:
            pending.append(([group[n] for n in indexes], fut))

    @staticmethod
    def _fail(item: Item, exc: BaseException) -> None:
        item.status = 503
        item.detail = f"Kafka did not acknowledge the event ({type(exc).__name__}); retry later"
