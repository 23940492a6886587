"""The gateway's core: validate items, authorise them by type, publish them, report each.

No FastAPI here: the HTTP layer (``api.py``) reads the body and turns outcomes into responses.
Each item ends in exactly one outcome: accepted (Kafka acknowledged, or a recent duplicate),
rejected (400/403/422: never sent) or failed (503: Kafka did not acknowledge; the client
retries, and a retry of an item that did get through is answered as a duplicate or dropped by
the consumers' inboxes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from services.ingest.limits import DedupeCache
from services.ingest.routing import NotAccepted, Router
from shared.auth import Principal
from shared.events import EventError, parse_event
from shared.kafka import PRODUCER_STATE_ERRORS, Producer

log = logging.getLogger("qingshou.ingest")

HEADERS: Final = [("content-type", b"application/cloudevents+json")]

TITLES: Final = {400: "Bad request", 403: "Forbidden", 422: "Unprocessable content",
                 503: "Service unavailable"}


@dataclass(slots=True)
class Item:
    """One posted event on its way through the gateway."""

    index: int
    status: int = 0  # 0 while undecided; then 202, 400, 403, 422 or 503
    event_id: str | None = None
    source: str | None = None
    event_type: str | None = None
    topic: str = ""
    base_topic: str = ""
    key: bytes = b""
    value: bytes = b""
    duplicate: bool = False
    detail: str = ""
    errors: list[dict[str, str]] = field(default_factory=list)

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


def decode_error(item: Item, exc: Exception) -> Item:
    """A body that is not JSON at all."""
    return item.reject(400, "invalid_json: the body is not JSON",
                       [{"field": "", "message": str(exc)}])


class KafkaDown(Exception):
    """The producer is not connected (the gateway started while Kafka was unreachable)."""


class Publisher:
    """Sends checked items to Kafka and waits for every acknowledgement.

    Items of one request are all handed to the producer before any acknowledgement is awaited,
    so one request costs one round of broker batches, not one round trip per event. A pair
    ``(source, id)`` accepted recently is not sent again; a pair being sent right now by
    another request waits for that send and shares its outcome.
    """

    def __init__(self, producer: Callable[[], Producer], connected: Callable[[], bool],
                 dedupe: DedupeCache, clock: Callable[[], float] = time.monotonic) -> None:
        self._producer = producer
        self._connected = connected
        self._dedupe = dedupe
        self._clock = clock
        self._inflight: dict[tuple[str, str], asyncio.Future[bool]] = {}

    async def publish(self, items: list[Item]) -> None:
        """Decide every checked item (status 0) as 202 or 503."""
        now = self._clock()
        sends: list[tuple[Item, tuple[str, str], Any]] = []
        waits: list[tuple[Item, asyncio.Future[bool]]] = []
        loop = asyncio.get_running_loop()
        for item in items:
            if item.status:
                continue
            pair = (item.source or "", item.event_id or "")
            if self._dedupe.seen(pair, now):
                item.status, item.duplicate = 202, True
                continue
            pending = self._inflight.get(pair)
            if pending is not None:
                waits.append((item, pending))
                continue
            self._inflight[pair] = loop.create_future()
            sends.append((item, pair, None))
        try:
            await self._send_all(sends)
        finally:
            now = self._clock()
            for item, pair, _ in sends:
                ok = item.status == 202
                if ok:
                    self._dedupe.add(pair, now)
                fut = self._inflight.pop(pair, None)
                if fut is not None and not fut.done():
                    fut.set_result(ok)
        for item, pending in waits:
            ok = await asyncio.shield(pending)
            item.status, item.duplicate = (202, True) if ok else (503, False)
            if not ok:
                item.detail = "Kafka did not acknowledge the event; retry later"

    async def _send_all(self, sends: list[tuple[Item, tuple[str, str], Any]]) -> None:
        if not sends:
            return
        futures: list[tuple[Item, asyncio.Future[Any]]] = []
        if not self._connected():
            for item, _, _ in sends:
                self._fail(item, KafkaDown("Kafka is unreachable"))
            return
        producer = self._producer()
        for item, _, _ in sends:
            try:
                fut = await producer.send(item.topic, value=item.value, key=item.key,
                                          headers=HEADERS)
            except Exception as exc:
                self._fail(item, exc)
                continue
            futures.append((item, fut))
        # every future is awaited, so nothing is left half-known when the response is written
        outcomes = await asyncio.gather(*(f for _, f in futures), return_exceptions=True)
        for (item, _), outcome in zip(futures, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                self._fail(item, outcome)
            else:
                item.status = 202
        if any(isinstance(o, PRODUCER_STATE_ERRORS) for o in outcomes):
            await producer.rebuild()  # a lost producer id only heals with a new producer
        failed = [item for item, _, _ in sends if item.status == 503]
        if failed:
            log.warning("Kafka did not acknowledge %d of %d events", len(failed), len(sends),
                        extra={"error": failed[0].detail})

    @staticmethod
    def _fail(item: Item, exc: BaseException) -> None:
        item.status = 503
        item.detail = f"Kafka did not acknowledge the event ({type(exc).__name__}); retry later"
