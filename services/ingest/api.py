"""HTTP entry: ``POST /v1/events`` and ``POST /v1/events/batch``.

The requests are served by the plain ASGI handlers of ``lane.py`` (see there why): in the
running service the :class:`~services.ingest.lane.EventLane` middleware answers them before
FastAPI's router. The routes below declare them for the OpenAPI document (bodies, responses,
the bearer key) and hand any request that does reach them to the same handlers, so an app built
without the middleware behaves the same, only slower.
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Depends, Request, Response
from starlette.types import Receive, Scope, Send

from services.ingest import openapi
from services.ingest.lane import (
    BATCH_PATH,
    SINGLE_PATH,
    EventHandlers,
    Gateway,
    Handler,
    build_gateway,
)
from shared.api import principal
from shared.service import Runtime

STATE_KEY: Final = "ingest"
HANDLERS_KEY: Final = "ingest_handlers"

__all__ = ["HANDLERS_KEY", "STATE_KEY", "Gateway", "events_router"]


class _Handled(Response):
    """A route's answer that lets the ASGI handler read the body and respond itself."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._handler(scope, receive, send)


def events_router(rt: Runtime) -> APIRouter:
    """The gateway's routes; its state goes into ``rt.extras`` for the lifespan and tests."""
    g = build_gateway(rt)
    handlers = EventHandlers(g, rt.keyring)
    rt.extras[STATE_KEY] = g
    rt.extras[HANDLERS_KEY] = handlers
    router = APIRouter(tags=["events"])
    s = g.settings
    # the key is checked by the handler itself; the dependency documents the bearer scheme
    authenticated = [Depends(principal)]

    @router.post(SINGLE_PATH, status_code=202, response_class=Response,
                 summary="Publish one CloudEvent", dependencies=authenticated,
                 responses=openapi.single_responses(), openapi_extra=openapi.single_body())
    async def post_event(request: Request) -> Response:
        return _Handled(handlers.single)

    @router.post(BATCH_PATH, status_code=202, response_class=Response,
                 summary=f"Publish up to {s.ingest_max_batch_items} CloudEvents, "
                         "with a result per event", dependencies=authenticated,
                 responses=openapi.batch_responses(),
                 openapi_extra=openapi.batch_body(s.ingest_max_batch_items))
    async def post_batch(request: Request) -> Response:
        return _Handled(handlers.batch)

    return router
