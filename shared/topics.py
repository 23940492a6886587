"""Kafka topic names and their dead-letter twins.

Tests run against one shared broker, so every topic name can carry a per-test prefix
(`t1234.loan-events`); services build a `TopicNames` from settings and never hard-code names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "ALL_TOPICS",
    "CALENDAR",
    "COLLECTION_ASSIGNMENTS",
    "COLLECTION_STAGES",
    "COLLECTOR_SCORES",
    "CONTACT_OUTCOMES",
    "DLQ_SUFFIX",
    "LOAN_EVENTS",
    "PROMISE_OUTCOMES",
    "REPAYMENTS_APPLIED",
    "TopicNames",
    "dlq",
]

LOAN_EVENTS: Final = "loan-events"
CALENDAR: Final = "calendar"
COLLECTION_STAGES: Final = "collection-stages"
COLLECTION_ASSIGNMENTS: Final = "collection-assignments"
REPAYMENTS_APPLIED: Final = "repayments-applied"
PROMISE_OUTCOMES: Final = "promise-outcomes"
CONTACT_OUTCOMES: Final = "contact-outcomes"
COLLECTOR_SCORES: Final = "collector-scores"

ALL_TOPICS: Final[tuple[str, ...]] = (
    LOAN_EVENTS,
    CALENDAR,
    COLLECTION_STAGES,
    COLLECTION_ASSIGNMENTS,
    REPAYMENTS_APPLIED,
    PROMISE_OUTCOMES,
    CONTACT_OUTCOMES,
    COLLECTOR_SCORES,
)

DLQ_SUFFIX: Final = ".dlq"


def dlq(topic: str) -> str:
    """The dead-letter twin of `topic` (`loan-events` -> `loan-events.dlq`)."""
    return f"{topic}{DLQ_SUFFIX}"


@dataclass(frozen=True, slots=True)
class TopicNames:
    """Topic names with an optional prefix: `TopicNames("t9").loan_events == "t9.loan-events"`.

    A trailing dot on the prefix is accepted and not doubled.
    """

    prefix: str = ""

    def name(self, base: str) -> str:
        """The real topic name of base topic `base` (which may already be a DLQ name)."""
        if not self.prefix:
            return base
        return f"{self.prefix.rstrip('.')}.{base}"

    def dlq(self, base: str) -> str:
        """The real name of the dead-letter twin of base topic `base`."""
        return self.name(dlq(base))

    def base(self, name: str) -> str:
        """Inverse of `name`: strip the prefix from a real topic name."""
        if not self.prefix:
            return name
        head = f"{self.prefix.rstrip('.')}."
        if not name.startswith(head):
            raise ValueError(f"topic {name!r} does not carry prefix {self.prefix!r}")
        return name[len(head) :]

    def all(self) -> list[str]:
        """Every topic the project creates: each base topic followed by its DLQ twin."""
        names: list[str] = []
        for base in ALL_TOPICS:
            names.append(self.name(base))
            names.append(self.dlq(base))
        return names

    @property
    def loan_events(self) -> str:
        return self.name(LOAN_EVENTS)

    @property
    def calendar(self) -> str:
        return self.name(CALENDAR)

    @property
    def collection_stages(self) -> str:
        return self.name(COLLECTION_STAGES)

    @property
    def collection_assignments(self) -> str:
        return self.name(COLLECTION_ASSIGNMENTS)

    @property
    def repayments_applied(self) -> str:
        return self.name(REPAYMENTS_APPLIED)

    @property
    def promise_outcomes(self) -> str:
        return self.name(PROMISE_OUTCOMES)

    @property
    def contact_outcomes(self) -> str:
        return self.name(CONTACT_OUTCOMES)

    @property
    def collector_scores(self) -> str:
        return self.name(COLLECTOR_SCORES)
