"""The composition root every service shares: settings in, a running service out.

A service describes itself with a :class:`ServiceDefinition` (its name, port, migrations, the
consumer spec and routers it builds from the runtime). :func:`bootstrap` creates the engine,
producer, consumer runner and outbox relay; :func:`create_app` wraps them in a FastAPI app whose
lifespan starts them and stops them cleanly on SIGTERM (uvicorn turns the signal into a
lifespan shutdown: the consumer finishes its batch, commits, leaves the group). Nothing is
created at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.api import ops_router
from shared.auth import KeyRing
from shared.consumer import ConsumerRunner, ConsumerSpec, RunnerConfig
from shared.db import make_engine, ping
from shared.kafka import Producer, ensure_topics, make_producer
from shared.logs import configure_logging
from shared.migrations import migrate
from shared.problems import install_problem_handlers
from shared.relay import RELAY_SESSION_SETTINGS, InlineRelay, OutboxRelay, RelayThread
from shared.settings import ServiceSettings
from shared.topics import ALL_TOPICS, TopicNames

S = TypeVar("S", bound=ServiceSettings)

log = logging.getLogger("qingshou.service")


@dataclass
class ServiceDefinition:
    name: str
    title: str
    port: int
    description: str = ""
    migrations: Path | None = None
    consumer: Callable[[Runtime], ConsumerSpec] | None = None
    routers: Callable[[Runtime], Sequence[APIRouter]] = lambda _rt: ()
    background: Callable[[Runtime], Sequence[Callable[[], Awaitable[None]]]] = lambda _rt: ()
    setup: Callable[[Runtime], Awaitable[None]] | None = None
    needs_db: bool = True


@dataclass
class Runtime:
    """Everything a running service holds; built by :func:`bootstrap`."""

    definition: ServiceDefinition
    settings: ServiceSettings
    topics: TopicNames
    keyring: KeyRing
    producer: Producer
    engine: AsyncEngine | None = None
    runner: ConsumerRunner | None = None
    relay: RelayThread | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _background: list[asyncio.Task[None]] = field(default_factory=list)
    _relay_engine: AsyncEngine | None = None  # the inline relay's (_inline_relay)

    @property
    def source(self) -> str:
        return f"urn:qingshou:{self.definition.name}"

    def own_settings(self, cls: type[S]) -> S:
        """The settings as the service's own subclass ``cls`` (its extra ``QS_`` fields read
        from the environment once, the shared ones as given), kept in ``extras``."""
        if isinstance(self.settings, cls):
            return self.settings
        found = self.extras.get("settings")
        if not isinstance(found, cls):
            base = self.settings.model_dump(exclude_unset=True)
            base.update(service=self.settings.service, port=self.settings.port)
            found = self.extras["settings"] = cls(**base)
        return found

    async def start(self) -> None:
        s, d = self.settings, self.definition
        await ensure_topics(s.kafka_bootstrap, [self.topics.name(t) for t in ALL_TOPICS],
                            s.topic_partitions)
        if self.engine is not None and d.migrations is not None:
            await migrate(s.database_url, s.schema_name, d.migrations)
        await self.producer.start()
        if d.setup is not None:
            await d.setup(self)
        if d.consumer is not None and self.engine is not None:
            spec = d.consumer(self)
            self.runner = ConsumerRunner(spec, self.engine, RunnerConfig(
                bootstrap=s.kafka_bootstrap, group_id=s.group_id, schema=s.schema_name,
                topics=self.topics, source=self.source, max_records=s.consumer_max_records,
                poll_timeout_ms=s.consumer_poll_timeout_ms, outbox_shards=s.relay_shards,
                client_id=f"{d.name}-consumer", inline_publish_max=s.relay_inline_max),
                inline=self._inline_relay() if s.relay_inline_max > 0 else None)
            await self.runner.start()
            self._spawn(self.runner.run(), "consumer")
            self.extras["consumer_task"] = self._tasks[-1]
        if self.engine is not None and d.consumer is not None:
            self.relay = RelayThread(s.database_url, s.schema_name, s.kafka_bootstrap,
                                     name=d.name, shards=s.relay_shards, batch=s.relay_batch,
                                     poll_interval=s.relay_poll_interval_s)
            await self.relay.start()
        for job in d.background(self):
            self._spawn(job(), getattr(job, "__name__", "background"), background=True)

    def _inline_relay(self) -> InlineRelay:
        """The consumer's own relay for its small batches (:class:`InlineRelay`): this loop's
        producer, and an engine of one connection with the relay's session settings."""
        s = self.settings
        self._relay_engine = make_engine(s.database_url, s.schema_name, pool_size=1,
                                         settings=RELAY_SESSION_SETTINGS)
        relay = OutboxRelay(self._relay_engine, self.producer, s.schema_name,
                            name=self.definition.name, shards=s.relay_shards,
                            batch=s.relay_batch)
        return InlineRelay(relay, fallback=lambda: self.relay.wake() if self.relay else None)

    def _spawn(self, coro: Awaitable[None], name: str, background: bool = False) -> None:
        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task ended with an error", extra={"task": name})

        task = asyncio.create_task(guarded(), name=f"{self.definition.name}:{name}")
        (self._background if background else self._tasks).append(task)

    async def stop(self) -> None:
        # background jobs (schedulers, dispatchers) are cancelled: whatever they had claimed
        # is rolled back and claimed again after restart. The consumer and the relay finish
        # their batch in flight instead.
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.runner is not None:
            await self.runner.stop()
        # the relay finishes its cycle on its thread while the consumer finishes its batch
        relay_stopped = (asyncio.create_task(self.relay.stop())
                         if self.relay is not None else None)
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=20)
            for task in pending:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*pending, return_exceptions=True)
        if relay_stopped is not None:
            await relay_stopped
        if self.runner is not None and self.runner.inline is not None:
            await self.runner.inline.close()  # bounded, never raises
        if self._relay_engine is not None:
            with contextlib.suppress(Exception):
                await self._relay_engine.dispose()
        with contextlib.suppress(Exception):
            await self.producer.stop()
        if self.engine is not None:
            await self.engine.dispose()
        log.info("service stopped", extra={"service": self.definition.name})

    async def ready(self) -> dict[str, bool]:
        checks: dict[str, bool] = {}
        if self.engine is not None:
            try:
                await asyncio.wait_for(ping(self.engine), 2)
                checks["database"] = True
            except Exception:
                checks["database"] = False
        try:
            ok = await asyncio.wait_for(self.producer.client.fetch_all_metadata(), 2)
            checks["kafka"] = ok is not None
        except Exception:
            checks["kafka"] = False
        task = self.extras.get("consumer_task")
        if task is not None:
            checks["consumer"] = not task.done()
        if self.relay is not None:
            checks["relay"] = self.relay.alive()
        # a service's own conditions, e.g. ingest's event routes being open
        for name, check in self.extras.get(READY_CHECKS, {}).items():
            checks[name] = bool(check())
        return checks


READY_CHECKS = "ready_checks"
"""Key in ``Runtime.extras`` of a ``{name: () -> bool}`` map that ``/readyz`` also requires."""


def settings_for(definition: ServiceDefinition, **overrides: Any) -> ServiceSettings:
    """The service's settings from the environment; its own port unless ``QS_PORT`` is set."""
    settings = ServiceSettings(service=definition.name, **overrides)
    if "port" not in settings.model_fields_set:
        settings.port = definition.port
    return settings


def bootstrap(definition: ServiceDefinition, settings: ServiceSettings) -> Runtime:
    """Build (not start) a service's runtime from its settings."""
    engine = None
    if definition.needs_db:
        engine = make_engine(settings.database_url, settings.schema_name, settings.db_pool_size)
    return Runtime(
        definition=definition,
        settings=settings,
        topics=TopicNames(settings.topic_prefix),
        keyring=KeyRing(settings.api_keys),
        producer=make_producer(settings.kafka_bootstrap, client_id=definition.name),
        engine=engine,
    )


def create_app(definition: ServiceDefinition, settings: ServiceSettings | None = None) -> FastAPI:
    """The service's FastAPI app; its lifespan bootstraps, starts and stops the runtime."""
    settings = settings or settings_for(definition)
    runtime = bootstrap(definition, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await runtime.start()
        except BaseException:
            await runtime.stop()  # release whatever started before the failure
            raise
        log.info("service started", extra={"service": definition.name, "port": settings.port})
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title=definition.title, description=definition.description,
                  version="0.1.0", lifespan=lifespan)
    app.state.runtime = runtime
    app.state.keyring = runtime.keyring
    install_problem_handlers(app)
    app.include_router(ops_router(runtime.ready))
    for router in definition.routers(runtime):
        app.include_router(router)
    return app


def serve(definition: ServiceDefinition) -> None:
    """Entry point of ``python -m services.<name>``: JSON logs, uvicorn on 127.0.0.1."""
    import uvicorn

    settings = settings_for(definition)
    configure_logging(settings.log_level, definition.name)
    app = create_app(definition, settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None,
                access_log=False, timeout_graceful_shutdown=20)
