"""Staging: the delinquency engine (arrears, DPD, stages, promises, case owners)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from fastapi import APIRouter

from services.staging.api import build_router
from services.staging.consumer import consumer_spec
from services.staging.eod import EndOfDay
from shared.consumer import ConsumerSpec
from shared.service import Runtime, ServiceDefinition


def consumer(runtime: Runtime) -> ConsumerSpec:
    return consumer_spec()


def routers(runtime: Runtime) -> Sequence[APIRouter]:
    return [build_router(runtime)]


def end_of_day(runtime: Runtime) -> EndOfDay:
    assert runtime.engine is not None
    s = runtime.settings
    return EndOfDay(runtime.engine, runtime.topics, runtime.source, s.schema_name,
                    s.relay_shards)


def background(runtime: Runtime) -> Sequence[Callable[[], Awaitable[None]]]:
    return [end_of_day(runtime).run_forever]


DEFINITION = ServiceDefinition(
    name="staging",
    title="Qingshou staging",
    description="Arrears, days past due, stages, promises to pay and case owners.",
    port=8002,
    migrations=Path(__file__).parent / "migrations",
    consumer=consumer,
    routers=routers,
    background=background,
)
