"""Incentives: collector scorecards and payouts with a quality gate."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fastapi import APIRouter

from services.incentives.api import build_router
from services.incentives.consumer import consumer_spec
from services.incentives.settings import IncentivesSettings
from shared.consumer import ConsumerSpec
from shared.service import Runtime, ServiceDefinition


def incentives_settings(runtime: Runtime) -> IncentivesSettings:
    """The runtime's settings as the incentives' own (extra fields from the environment)."""
    return runtime.own_settings(IncentivesSettings)


def consumer(runtime: Runtime) -> ConsumerSpec:
    return consumer_spec(zone=incentives_settings(runtime).zone)


def routers(runtime: Runtime) -> Sequence[APIRouter]:
    return [build_router(runtime, incentives_settings(runtime).zone)]


DEFINITION = ServiceDefinition(
    name="incentives",
    title="Qingshou incentives",
    description="Credited recoveries, scorecards, payouts and leaderboards.",
    port=8004,
    migrations=Path(__file__).parent / "migrations",
    consumer=consumer,
    routers=routers,
)
