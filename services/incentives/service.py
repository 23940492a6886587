"""Incentives: collector scorecards and payouts with a quality gate."""

from __future__ import annotations

from pathlib import Path

from shared.consumer import ConsumerSpec
from shared.service import Runtime, ServiceDefinition
from shared.topics import (COLLECTION_ASSIGNMENTS, COLLECTION_STAGES, LOAN_EVENTS,
                           PROMISE_OUTCOMES, REPAYMENTS_APPLIED)


def consumer(runtime: Runtime) -> ConsumerSpec:
    return ConsumerSpec(name="incentives", topics=[COLLECTION_ASSIGNMENTS, REPAYMENTS_APPLIED,
                                                   PROMISE_OUTCOMES, COLLECTION_STAGES,
                                                   LOAN_EVENTS],
                        handlers={})


DEFINITION = ServiceDefinition(
    name="incentives",
    title="Qingshou incentives",
    description="Credited recoveries, scorecards, payouts and leaderboards.",
    port=8004,
    migrations=Path(__file__).parent / "migrations",
    consumer=consumer,
)
