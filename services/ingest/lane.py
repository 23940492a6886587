"""``POST /v1/events`` and ``POST /v1/events/batch`` as plain ASGI handlers.

Profiled under load, FastAPI's per-request machinery (routing, dependency solving, exit stacks,
the thread hop of a sync dependency, the telemetry check) cost several times the gateway's own
work on a single event. So :class:`EventLane`, a pure ASGI middleware in front of the router,
serves exactly these two method + path pairs: it reads the raw body, decodes it once with
orjson and answers with JSON encoded once. Every other request goes to FastAPI untouched. The
FastAPI routes in ``api.py`` stay declared for the OpenAPI document and hand any request that
reaches them to the same :class:`EventHandlers`.

Order of checks: 401 (key) -> 403 (no events scope at all) -> 415 -> 429 (single) -> 413 ->
400 -> 422 / 413 (batch: not an array / too many items) -> 429 (batch, one token per item,
before the items are checked: checking is the work the limit protects) -> 403/422/413 per
event -> Kafka (202 / 503). Problems are
rendered by ``shared.problems.problem_response``, as FastAPI's Problem handler renders them.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from services.ingest import openapi
from services.ingest.gateway import (
    Item,
    Publisher,
    check,
    decode_error,
    limit_size,
    vouched,
)
from services.ingest.limits import DedupeCache, RateLimiter, retry_after
from services.ingest.metrics import count_events, count_request
from services.ingest.routing import EVENT_SCOPES, Router, inbound_types
from services.ingest.settings import IngestSettings, ingest_settings
from shared.auth import KeyRing, Principal
from shared.events.bulk import BulkChecker
from shared.problems import Problem, problem_response
from shared.service import Runtime

SINGLE_PATH: Final = "/v1/events"
BATCH_PATH: Final = "/v1/events/batch"
# Checking 1,000 events takes tens of milliseconds of CPU. Done in one go it kept the event
# loop from the producer's sender meanwhile: each produce round trip then waited for a whole
# batch's checks, and the batch endpoint ran at half a core (the rest spent waiting on Kafka).
CHECK_SLICE: Final = 100

_JSON_HEADER: Final = (b"content-type", b"application/json")

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class Gateway:
    """The ingest service's state, kept in ``runtime.extras["ingest"]``."""

    settings: IngestSettings
    router: Router
    limiter: RateLimiter
    publisher: Publisher
    # vouches for the usual batch item in one pydantic-core call (shared/events/bulk.py)
    checker: BulkChecker = field(default_factory=lambda: BulkChecker(types=inbound_types()))
    connected: bool = False
    clock: Any = field(default=time.monotonic)


def build_gateway(rt: Runtime) -> Gateway:
    s = ingest_settings(rt.settings)
    holder: dict[str, Gateway] = {}
    publisher = Publisher(producer=lambda: rt.producer,
                          connected=lambda: holder["g"].connected,
                          dedupe=DedupeCache(s.ingest_dedupe_entries, s.ingest_dedupe_ttl_s))
    gateway = Gateway(settings=s, router=Router(rt.topics),
                      limiter=RateLimiter(s.ingest_rate_per_second, s.ingest_rate_burst),
                      publisher=publisher)
    holder["g"] = gateway
    return gateway


@dataclass(slots=True)
class _Head:
    """The request headers the routes look at (the first of each, as Starlette's ``get``)."""

    authorization: str | None = None
    content_type: str | None = None
    length: str | None = None

    @property
    def media(self) -> str:
        return (self.content_type or "").split(";", 1)[0].strip().lower()

    @classmethod
    def of(cls, scope: Scope) -> _Head:
        head = cls()
        for name, value in scope["headers"]:  # ASGI header names are lower-case
            if name == b"authorization" and head.authorization is None:
                head.authorization = value.decode("latin-1")
            elif name == b"content-type" and head.content_type is None:
                head.content_type = value.decode("latin-1")
            elif name == b"content-length" and head.length is None:
                head.length = value.decode("latin-1")
        return head


class EventHandlers:
    """The two event routes, as ASGI callables over the gateway."""

    def __init__(self, gateway: Gateway, keyring: KeyRing) -> None:
        self.g = gateway
        self._keyring = keyring
        # sha256 of a presented key -> its principal; only keys that authenticated are kept,
        # so there are at most as many entries as configured keys. A miss still goes through
        # the keyring's constant-time comparison with every configured hash.
        self._known: dict[bytes, Principal] = {}

    async def single(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await self._single(_Head.of(scope), receive)
        except Problem as problem:
            count_request("single", problem.status)
            await _answer_problem(problem, scope, receive, send)
            return
        count_request("single", 202)
        await _answer(send, 202, body)

    async def batch(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, body = await self._batch(_Head.of(scope), receive)
        except Problem as problem:
            count_request("batch", problem.status)
            await _answer_problem(problem, scope, receive, send)
            return
        count_request("batch", status)
        await _answer(send, status, body)

    async def _single(self, head: _Head, receive: Receive) -> bytes:
        g, s = self.g, self.g.settings
        who = self._authenticate(head)
        _require_media(head, openapi.SINGLE_TYPES)
        self._throttle(who, 1)
        body = await _read_body(head, receive, s.ingest_max_event_bytes)
        item = Item(index=0)
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            decode_error(item, exc)
        else:
            check(item, obj, who, g.router, body)
        if item.status:
            count_events("single", rejected=1)
            raise Problem(item.status, item.detail, errors=item.errors)
        await g.publisher.publish([item])
        if item.status != 202:
            count_events("single", failed=1)
            raise self._unavailable(item.detail)
        count_events("single", accepted=int(not item.duplicate), duplicate=int(item.duplicate))
        return orjson.dumps({"id": item.event_id, "source": item.source,
                             "type": item.event_type, "topic": item.base_topic,
                             "duplicate": item.duplicate})

    async def _batch(self, head: _Head, receive: Receive) -> tuple[int, bytes]:
        g, s = self.g, self.g.settings
        who = self._authenticate(head)
        _require_media(head, openapi.BATCH_TYPES)
        body = await _read_body(head, receive, s.ingest_max_batch_bytes)
        try:
            objs = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise Problem(400, "invalid_json: the body is not JSON",
                          errors=[{"field": "", "message": str(exc)}]) from None
        if not isinstance(objs, list) or not objs:
            raise Problem(422, "a batch is a non-empty JSON array of CloudEvents",
                          errors=[{"field": "", "message": "expected a non-empty array"}])
        if len(objs) > s.ingest_max_batch_items:
            raise Problem(413, f"at most {s.ingest_max_batch_items} events per batch",
                          errors=[{"field": "", "message": f"{len(objs)} events"}])
        self._throttle(who, len(objs))
        router, limit, vouch = g.router, s.ingest_max_event_bytes, g.checker.valid
        items: list[Item] = []
        for start in range(0, len(objs), CHECK_SLICE):
            if start:
                # let the producer's sender and the other requests run between slices
                await asyncio.sleep(0)
            chunk = objs[start:start + CHECK_SLICE]
            items += [vouched(start + k, obj, who, router, limit) if ok else
                      limit_size(check(Item(index=start + k), obj, who, router, None), limit)
                      for k, (obj, ok) in enumerate(zip(chunk, vouch(chunk), strict=True))]
        del objs, body  # the items hold what is sent; the decoded events can go before Kafka
        await g.publisher.publish(items)
        return self._batch_outcome(items)

    def _authenticate(self, head: _Head) -> Principal:
        """The caller by its bearer key (401), holding at least one events scope (403)."""
        # the parsing of FastAPI's HTTPBearer: "<scheme> <credentials>", scheme in any case
        scheme, _, token = (head.authorization or "").partition(" ")
        token = token.strip()
        if not (scheme and token) or scheme.lower() != "bearer":
            raise _unauthorized()
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        who = self._known.get(digest)
        if who is None:
            who = self._keyring.authenticate(token)
            if who is None:
                raise _unauthorized()
            self._known[digest] = who
        if who.scopes.isdisjoint(EVENT_SCOPES):
            raise Problem(403, f"the API key holds none of the scopes {', '.join(EVENT_SCOPES)}")
        return who

    def _throttle(self, who: Principal, cost: int) -> None:
        g = self.g
        wait = g.limiter.take(who.name, cost, g.clock())
        if wait:
            raise Problem(429, f"rate limit of {g.settings.ingest_rate_per_second:g} events/s "
                               "for this API key exceeded",
                          headers={"Retry-After": retry_after(wait)})

    def _unavailable(self, detail: str, **extra: Any) -> Problem:
        return Problem(503, detail,
                       headers={"Retry-After": str(self.g.settings.ingest_retry_after_s)},
                       **extra)

    def _batch_outcome(self, items: list[Item]) -> tuple[int, bytes]:
        accepted = duplicates = rejected = failed = 0
        for item in items:
            if item.status == 202:
                if item.duplicate:
                    duplicates += 1
                else:
                    accepted += 1
            elif item.status == 503:
                failed += 1
            else:
                rejected += 1
        counts = {"accepted": accepted, "duplicates": duplicates, "rejected": rejected,
                  "failed": failed}
        count_events("batch", accepted, duplicates, rejected, failed)
        results = [item.result() for item in items]
        if failed:
            raise self._unavailable(
                f"Kafka did not acknowledge {failed} of {len(items)} events; "
                "`results` says which, retry those", results=results, **counts)
        return (202 if rejected == 0 else 207), orjson.dumps({**counts, "results": results})


class EventLane:
    """Pure ASGI middleware: the two event routes straight to :class:`EventHandlers`."""

    def __init__(self, app: ASGIApp, handlers: EventHandlers) -> None:
        self.app = app
        self._routes: dict[str, Handler] = {SINGLE_PATH: handlers.single,
                                            BATCH_PATH: handlers.batch}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self._routes.get(scope["path"])
            if handler is not None:
                await handler(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _unauthorized() -> Problem:
    return Problem(401, "a valid bearer API key is required",
                   headers={"WWW-Authenticate": "Bearer"})


def _require_media(head: _Head, allowed: tuple[str, ...]) -> None:
    if head.media not in allowed:
        raise Problem(415, f"Content-Type must be one of {', '.join(allowed)}",
                      errors=[{"field": "Content-Type",
                               "message": f"unsupported media type {head.media or '(none)'!r}"}])


def _too_big(limit: int) -> Problem:
    return Problem(413, f"the body is larger than {limit} bytes",
                   errors=[{"field": "body", "message": f"at most {limit} bytes"}])


async def _read_body(head: _Head, receive: Receive, limit: int) -> bytes:
    if head.length is not None:
        if not head.length.isdigit():
            raise Problem(400, "invalid Content-Length",
                          errors=[{"field": "Content-Length", "message": "not a number"}])
        if int(head.length) > limit:
            raise _too_big(limit)
    # the streamed size is what counts: a chunked body has no Content-Length at all
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            # nobody is left to answer; nothing was published
            raise Problem(400, "the client disconnected before the body was complete")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_big(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [_JSON_HEADER, (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


async def _answer_problem(problem: Problem, scope: Scope, receive: Receive, send: Send) -> None:
    # the rare path: the very response FastAPI's Problem handler would build
    response = problem_response(problem.status, problem.detail, errors=problem.errors,
                                type_=problem.type, title=problem.title,
                                instance=Request(scope).url.path, headers=problem.headers,
                                **problem.extra)
    await response(scope, receive, send)
