"""Notifier: compliant, humane contacts by SMS, e-mail, call task and letter."""

from __future__ import annotations

from pathlib import Path

from shared.consumer import ConsumerSpec
from shared.service import Runtime, ServiceDefinition
from shared.topics import (CALENDAR, COLLECTION_ASSIGNMENTS, COLLECTION_STAGES, LOAN_EVENTS,
                           PROMISE_OUTCOMES)


def consumer(runtime: Runtime) -> ConsumerSpec:
    return ConsumerSpec(name="notifier", topics=[COLLECTION_STAGES, COLLECTION_ASSIGNMENTS,
                                                 PROMISE_OUTCOMES, LOAN_EVENTS, CALENDAR],
                        handlers={})


DEFINITION = ServiceDefinition(
    name="notifier",
    title="Qingshou notifier",
    description="Contact decisions (quiet hours, caps, cease), templates and dispatch.",
    port=8003,
    migrations=Path(__file__).parent / "migrations",
    consumer=consumer,
)
