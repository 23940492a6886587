"""Staging: the delinquency engine (arrears, DPD, stages, promises, case owners)."""

from __future__ import annotations

from pathlib import Path

from shared.consumer import ConsumerSpec
from shared.service import Runtime, ServiceDefinition
from shared.topics import CALENDAR, LOAN_EVENTS


def consumer(runtime: Runtime) -> ConsumerSpec:
    return ConsumerSpec(name="staging", topics=[LOAN_EVENTS, CALENDAR], handlers={})


DEFINITION = ServiceDefinition(
    name="staging",
    title="Qingshou staging",
    description="Arrears, days past due, stages, promises to pay and case owners.",
    port=8002,
    migrations=Path(__file__).parent / "migrations",
    consumer=consumer,
)
