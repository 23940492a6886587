"""Incentives: collector scorecards and payouts with a quality gate."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fastapi import APIRouter

from services.incentives.api import build_router
from services.incentives.consumer import consumer_spec
from shared.consumer import ConsumerSpec
from shared.service import Runtime, ServiceDefinition


def consumer(runtime: Runtime) -> ConsumerSpec:
    return consumer_spec()


def routers(runtime: Runtime) -> Sequence[APIRouter]:
    return [build_router(runtime)]


DEFINITION = ServiceDefinition(
    name="incentives",
    title="Qingshou incentives",
    description="Credited recoveries, scorecards, payouts and leaderboards.",
    port=8004,
    migrations=Path(__file__).parent / "migrations",
    consumer=consumer,
    routers=routers,
)
