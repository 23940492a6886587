"""HTTP entry: ``POST /v1/events`` and ``POST /v1/events/batch``.

The body is read raw (bounded by the size limit, whatever Content-Length claims), decoded once
with orjson and handed to the gateway; responses are encoded with orjson too. Order of checks:
401 (key) -> 403 (no events scope at all) -> 415 -> 429 (single) -> 413 -> 400 -> 422/403 per
event -> 429 (batch, charged per item) -> Kafka (202 / 503).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from fastapi import APIRouter, Depends, Request, Response
from starlette.requests import ClientDisconnect

from services.ingest import openapi
from services.ingest.gateway import Item, Publisher, check, decode_error
from services.ingest.limits import DedupeCache, RateLimiter, retry_after
from services.ingest.routing import EVENT_SCOPES, Router
from services.ingest.settings import IngestSettings, ingest_settings
from shared.api import principal
from shared.auth import Principal
from shared.problems import Problem
from shared.service import Runtime

STATE_KEY: Final = "ingest"
JSON: Final = "application/json"


@dataclass
class Gateway:
    """The ingest service's state, kept in ``runtime.extras["ingest"]``."""

    settings: IngestSettings
    router: Router
    limiter: RateLimiter
    publisher: Publisher
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


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _require_media(request: Request, allowed: tuple[str, ...]) -> None:
    media = _media_type(request)
    if media not in allowed:
        raise Problem(415, f"Content-Type must be one of {', '.join(allowed)}",
                      errors=[{"field": "Content-Type",
                               "message": f"unsupported media type {media or '(none)'!r}"}])


def _require_event_scope(who: Principal) -> None:
    if not any(who.allows(s) for s in EVENT_SCOPES):
        raise Problem(403, "the API key holds none of the scopes "
                           f"{', '.join(EVENT_SCOPES)}")


def _throttle(g: Gateway, who: Principal, cost: int) -> None:
    wait = g.limiter.take(who.name, cost, g.clock())
    if wait:
        raise Problem(429, f"rate limit of {g.settings.ingest_rate_per_second:g} events/s "
                           "for this API key exceeded",
                      headers={"Retry-After": retry_after(wait)})


async def _read_body(request: Request, limit: int) -> bytes:
    too_big = Problem(413, f"the body is larger than {limit} bytes",
                      errors=[{"field": "body", "message": f"at most {limit} bytes"}])
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Problem(400, "invalid Content-Length",
                          errors=[{"field": "Content-Length", "message": "not a number"}])
        if int(declared) > limit:
            raise too_big
    # the streamed size is what counts: a chunked body has no Content-Length at all
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
    except ClientDisconnect:
        # nobody is left to answer; nothing was published
        raise Problem(400, "the client disconnected before the body was complete") from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _unavailable(g: Gateway, detail: str, **extra: Any) -> Problem:
    return Problem(503, detail, headers={"Retry-After": str(g.settings.ingest_retry_after_s)},
                   **extra)


def events_router(rt: Runtime) -> APIRouter:
    """The gateway's routes; its state goes into ``rt.extras`` for the lifespan and tests."""
    g = build_gateway(rt)
    rt.extras[STATE_KEY] = g
    router = APIRouter(prefix="/v1", tags=["events"])
    s = g.settings

    @router.post("/events", status_code=202, response_class=Response,
                 summary="Publish one CloudEvent",
                 responses=openapi.single_responses(), openapi_extra=openapi.single_body())
    async def post_event(request: Request, who: Principal = Depends(principal)) -> Response:
        _require_event_scope(who)
        _require_media(request, openapi.SINGLE_TYPES)
        _throttle(g, who, 1)
        body = await _read_body(request, s.ingest_max_event_bytes)
        item = Item(index=0)
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            decode_error(item, exc)
        else:
            check(item, obj, who, g.router, body)
        if item.status:
            raise Problem(item.status, item.detail, errors=item.errors)
        await g.publisher.publish([item])
        if item.status != 202:
            raise _unavailable(g, item.detail)
        return Response(orjson.dumps({
            "id": item.event_id, "source": item.source, "type": item.event_type,
            "topic": item.base_topic, "duplicate": item.duplicate}),
            status_code=202, media_type=JSON)

    @router.post("/events/batch", status_code=202, response_class=Response,
                 summary=f"Publish up to {s.ingest_max_batch_items} CloudEvents, "
                         "with a result per event",
                 responses=openapi.batch_responses(),
                 openapi_extra=openapi.batch_body(s.ingest_max_batch_items))
    async def post_batch(request: Request, who: Principal = Depends(principal)) -> Response:
        _require_event_scope(who)
        _require_media(request, openapi.BATCH_TYPES)
        body = await _read_body(request, s.ingest_max_batch_bytes)
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
        _throttle(g, who, len(objs))
        items = [check(Item(index=i), obj, who, g.router, None) for i, obj in enumerate(objs)]
        await g.publisher.publish(items)
        return _batch_response(g, items)

    return router


def _batch_response(g: Gateway, items: list[Item]) -> Response:
    counts = {"accepted": 0, "duplicates": 0, "rejected": 0, "failed": 0}
    for item in items:
        if item.status == 202:
            counts["duplicates" if item.duplicate else "accepted"] += 1
        elif item.status == 503:
            counts["failed"] += 1
        else:
            counts["rejected"] += 1
    results = [item.result() for item in items]
    if counts["failed"]:
        raise _unavailable(
            g, f"Kafka did not acknowledge {counts['failed']} of {len(items)} events; "
               "`results` says which, retry those", results=results, **counts)
    status = 202 if counts["rejected"] == 0 else 207
    return Response(orjson.dumps({**counts, "results": results}), status_code=status,
                    media_type=JSON)
