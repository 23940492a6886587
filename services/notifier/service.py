"""Notifier: compliant, humane contacts by SMS, e-mail, call task and letter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from fastapi import APIRouter

from services.notifier.api import build_router
from services.notifier.clock import Clock, SimulationClock, WallClock
from services.notifier.dispatcher import Dispatcher
from services.notifier.handlers import consumer_spec
from services.notifier.scheduler import Scheduler
from services.notifier.settings import NotifierSettings
from shared.consumer import ConsumerSpec
from shared.service import Runtime, ServiceDefinition


def notifier_settings(runtime: Runtime) -> NotifierSettings:
    """The runtime's settings as the notifier's own (extra fields from the environment)."""
    return runtime.own_settings(NotifierSettings)


def clock_for(runtime: Runtime) -> Clock:
    if "clock" not in runtime.extras:
        s = notifier_settings(runtime)
        runtime.extras["clock"] = (SimulationClock(s.simulation_timezone, s.simulation_day_start)
                                   if s.simulation_clock else WallClock())
    return runtime.extras["clock"]


def consumer(runtime: Runtime) -> ConsumerSpec:
    return consumer_spec(notifier_settings(runtime), clock_for(runtime))


def routers(runtime: Runtime) -> Sequence[APIRouter]:
    assert runtime.engine is not None
    return [build_router(runtime.engine, notifier_settings(runtime), runtime.topics,
                         clock_for(runtime), runtime.source)]


def background(runtime: Runtime) -> Sequence[Callable[[], Awaitable[None]]]:
    assert runtime.engine is not None
    s, clock = notifier_settings(runtime), clock_for(runtime)
    scheduler = Scheduler(runtime.engine, s, runtime.topics, clock, runtime.source)
    dispatcher = Dispatcher(runtime.engine, s, runtime.topics, clock, source=runtime.source)

    async def scheduler_job() -> None:
        try:
            await scheduler.run()
        finally:  # cancelled at stop while asleep: give its kept connection back
            await scheduler.close()

    async def dispatcher_job() -> None:
        try:
            await dispatcher.run()
        finally:
            await dispatcher.close()

    return [scheduler_job, dispatcher_job]


DEFINITION = ServiceDefinition(
    name="notifier",
    title="Qingshou notifier",
    description="Contact decisions (quiet hours, caps, cease), templates and dispatch.",
    port=8003,
    migrations=Path(__file__).parent / "migrations",
    consumer=consumer,
    routers=routers,
    background=background,
)
