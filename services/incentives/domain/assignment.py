"""Who owns a loan's case, from `case.assigned` and `case.unassigned`.

Decision: an assignment that ended is kept (with `ended_on`) rather than forgotten, and it still
covers its last business day. Staging moves a cured loan to `current` and unassigns it on the same
business date; the two events travel on different topics, so the unassignment may be consumed
before the `stage.changed`. Keeping the ended record lets the cure still reach its collector.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

from services.incentives.domain.events import Event, data_of, day, optional_text, text


@dataclass(frozen=True, slots=True)
class Assignment:
    """A collector's ownership of one loan's case from `assigned_on` to `ended_on` (inclusive)."""

    loan_id: str
    collector_id: str
    team: str | None
    stage: str | None
    assigned_on: date
    ended_on: date | None = None

    @property
    def active(self) -> bool:
        return self.ended_on is None

    def covers(self, on: date) -> bool:
        """True if the collector owned the case on business date `on`."""
        return self.assigned_on <= on and (self.ended_on is None or on <= self.ended_on)


def assignment_from_assigned(event: Event) -> Assignment:
    """The assignment a `case.assigned` starts (it replaces the loan's previous one)."""
    data = data_of(event)
    return Assignment(
        loan_id=text(data, "loan_id"),
        collector_id=text(data, "collector_id"),
        team=optional_text(data, "team"),
        stage=optional_text(data, "stage"),
        assigned_on=day(data, "business_date"),
    )


def end_assignment(current: Assignment | None, event: Event) -> Assignment | None:
    """The loan's assignment after a `case.unassigned`.

    Only ends the current assignment if it belongs to the collector named in the event: a late
    unassignment of an earlier owner must not end the new owner's case.
    """
    data = data_of(event)
    collector_id = text(data, "collector_id")
    if current is None or current.collector_id != collector_id or not current.active:
        return current
    ended_on = max(day(data, "business_date"), current.assigned_on)
    return replace(current, ended_on=ended_on)
