"""Ingest: the REST gateway that publishes CloudEvents to Kafka.

``create_app(DEFINITION, settings)`` (shared) needs Kafka at start-up, like every service.
``create_ingest_app`` is what ``python -m services.ingest`` and the benchmark run: it starts even
while Kafka is unreachable (``/readyz`` 503, event routes 503 with ``Retry-After``) and keeps
trying to connect in the background, because a gateway that crash-loops while the broker
restarts turns a short Kafka outage into connection errors for every client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.ingest.api import HANDLERS_KEY, STATE_KEY, Gateway, events_router
from services.ingest.lane import EventLane
from services.ingest.settings import IngestSettings
from shared.kafka import make_producer
from shared.service import READY_CHECKS, Runtime, ServiceDefinition, create_app

log = logging.getLogger("qingshou.ingest")


async def _connected(rt: Runtime) -> None:
    """Runs inside ``Runtime.start`` once the producer is up: open the event routes."""
    gateway: Gateway = rt.extras[STATE_KEY]
    gateway.connected = True


DEFINITION = ServiceDefinition(
    name="ingest",
    title="Qingshou ingest",
    description="REST entry for CloudEvents: validation, authentication, scopes, Kafka.",
    port=8001,
    needs_db=False,
    routers=lambda rt: [events_router(rt)],
    setup=_connected,
)


async def _start_until_connected(rt: Runtime, interval: float) -> None:
    """``rt.start()`` until it succeeds; each failed attempt gets a fresh producer."""
    while True:
        try:
            await rt.start()
            log.info("connected to Kafka", extra={"bootstrap": rt.settings.kafka_bootstrap})
            return
        except Exception as exc:
            log.warning("Kafka unreachable; event routes answer 503 until it is back",
                        extra={"bootstrap": rt.settings.kafka_bootstrap,
                               "error": type(exc).__name__})
        with contextlib.suppress(Exception):
            await rt.producer.stop()
        rt.producer = make_producer(rt.settings.kafka_bootstrap, client_id=rt.definition.name)
        await asyncio.sleep(interval)


def create_ingest_app(settings: IngestSettings | None = None,
                      first_attempt_s: float = 10.0) -> FastAPI:
    """The ingest app with a start-up that tolerates an unreachable broker.

    Start-up waits up to ``first_attempt_s`` for Kafka, then serves anyway and goes on
    connecting in the background.
    """
    settings = settings or IngestSettings()
    app = create_app(DEFINITION, settings)
    rt: Runtime = app.state.runtime
    # the event routes skip FastAPI's per-request machinery (lane.py says why)
    app.add_middleware(EventLane, handlers=rt.extras[HANDLERS_KEY])
    # ready only once the event routes are open: the broker may answer metadata requests
    # while the producer is still starting, and the routes answer 503 until it has
    rt.extras[READY_CHECKS] = {"event_routes": lambda: rt.extras[STATE_KEY].connected}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(
            _start_until_connected(rt, settings.ingest_kafka_retry_interval_s),
            name="ingest:connect")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), first_attempt_s)
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            rt.extras[STATE_KEY].connected = False
            await rt.stop()

    app.router.lifespan_context = lifespan
    return app
