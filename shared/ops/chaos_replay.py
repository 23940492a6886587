"""What the chaos stream must leave behind: a pure replay of its events with staging's domain.

The replay does what the staging service does, without a database, Kafka or crashes: the
business date moves with each close, every loan event is applied with the domain handler at
that date (``loan.opened`` at the date itself), end of day ages the loans whose
``next_transition_date`` is due, and an :class:`AssignmentRequest` is resolved against the
roster. The chaos roster has one collector per team, so the choice of a collector depends on
the loan alone. Each emitted event is mapped the way the service maps it on its way to the
outbox (fields the shared models do not carry dropped, the pseudo-stage ``closed`` published
as ``current``, a relationship manager's case named after the fallback team).

What comes out: each loan's final state and the view ``GET /v1/loans/{id}`` must show, every
outbound event in order, and the credited recovery per collector and month that incentives
must report. The staging domain is imported here (not in ``shared`` at large) because it is
the definition of "a replay of its events".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from services.staging.domain.assignment import CollectorLoad, resolve_assignment
from services.staging.domain.handlers import (
    HANDLERS,
    Outcome,
    age_to,
    apply_assignment,
    open_loan,
)
from services.staging.domain.loan import CLOSED_STAGE, LoanState
from services.staging.domain.outbound import Emitted
from services.staging.domain.policy import DEFAULT_POLICY_SET, PolicySet
from shared.events import Event

__all__ = ["Expected", "ReplayEvent", "plain", "project", "replay", "view"]

# what the service drops on the way to the shared outbound models (services/staging/casework)
_DROP = {"repayment.applied": ("reason", "instalments"),
         "repayment.unapplied": ("reason", "instalments"),
         "promise.kept": ("business_date",), "promise.broken": ("business_date",)}
RM_TEAM = "relationship_manager"


@dataclass(frozen=True)
class ReplayEvent:
    phase: int
    type: str
    data: dict[str, Any]


@dataclass
class Expected:
    states: dict[str, LoanState]
    views: dict[str, dict[str, Any]]
    outbound: dict[str, list[tuple[str, dict[str, Any]]]]  # loan -> [(type, data)] in order
    credits: dict[tuple[str, str], Decimal] = field(default_factory=dict)  # (collector, YYYY-MM)
    applied: int = 0  # repayment.applied events


def plain(event: Event) -> dict[str, Any]:
    """The event's typed data as the plain values the domain reads (as the consumer does)."""
    return {k: (v.value if isinstance(v, Enum) else v) for k, v in event.data.__dict__.items()}


def project(state: LoanState, emitted: Emitted, policies: PolicySet) -> dict[str, Any]:
    """An emitted event's data as the service publishes it."""
    data = dict(emitted.data)
    for name in _DROP.get(emitted.type, ()):
        data.pop(name, None)
    for name in ("stage", "from_stage", "to_stage"):
        if data.get(name) == CLOSED_STAGE:
            data[name] = "current"
    if emitted.type in ("case.assigned", "case.unassigned") and data["team"] is None:
        if state.stage == CLOSED_STAGE:
            data["team"] = RM_TEAM
        else:
            data["team"] = policies.for_product(state.product).stage(state.stage).team or RM_TEAM
    return data


def view(state: LoanState) -> dict[str, Any]:
    """The fields of ``GET /v1/loans/{id}`` the check compares (as staging's API builds them)."""
    oldest = state.oldest_unpaid_due_date
    return {
        "status": state.status, "stage": state.stage, "dpd": state.dpd,
        "arrears": str(state.arrears), "oldest_due_date": oldest.isoformat() if oldest else None,
        "business_date": state.business_date.isoformat(),
        "flags": state.flags.to_dict()["active"],
        "owner": {"collector_id": state.owner.collector_id, "team": state.owner.team},
        "promises": [p.to_dict() for p in state.promises],
        "history": [h.to_dict() for h in state.history],
        "next_transition_date": (state.next_transition_date.isoformat()
                                 if state.next_transition_date else None),
    }


class _Staging:
    """Staging without I/O: loans in a dict, the outbox in lists."""

    def __init__(self, collectors: Mapping[str, str], policies: PolicySet):
        self.policies = policies
        self.roster = [CollectorLoad(cid, team, 100_000, True, 0)
                       for team, cid in collectors.items()]
        self.states: dict[str, LoanState] = {}
        self.outbound: dict[str, list[tuple[str, dict[str, Any]]]] = {}

    def record(self, outcome: Outcome) -> LoanState:
        state = outcome.state
        self.states[state.loan_id] = state
        self._publish(state, outcome.events)
        if outcome.assignment is not None:
            collector_id, team = resolve_assignment(outcome.assignment, self.roster)
            assigned = apply_assignment(state, collector_id, team,
                                        self.policies.for_product(state.product))
            state = self.states[state.loan_id] = assigned.state
            self._publish(state, assigned.events)
        return state

    def _publish(self, state: LoanState, events: Iterable[Emitted]) -> None:
        out = self.outbound.setdefault(state.loan_id, [])
        for emitted in events:
            out.append((emitted.type, project(state, emitted, self.policies)))

    def apply(self, event: ReplayEvent, business_date: date) -> None:
        data = event.data
        if event.type == "loan.opened":
            policy = self.policies.for_product(str(data["product"]))
            self.record(open_loan(data, business_date, policy))
            return
        handler = HANDLERS.get(event.type)
        if handler is None:  # not staging's (instalment.upcoming): the runner skips it
            return
        state = self.states[data["loan_id"]]
        on = max(business_date, state.business_date)
        self.record(handler(state, data, on, self.policies.for_product(state.product)))

    def end_of_day(self, on: date) -> None:
        for loan_id in sorted(self.states):
            state = self.states[loan_id]
            due = state.next_transition_date
            if due is None or due > on:
                continue
            policy = self.policies.for_product(state.product)
            state = self.record(age_to(state, on, policy))
            if state.next_transition_date is not None and state.next_transition_date <= on:
                self.states[loan_id] = replace(state, next_transition_date=on + timedelta(days=1))


def replay(events: Mapping[str, list[ReplayEvent]], closes: list[date],
           collectors: Mapping[str, str],
           policies: PolicySet = DEFAULT_POLICY_SET) -> Expected:
    """Replay each loan's events (in the order staging got them) phase by phase.

    ``closes[0]`` is closed before the first event; phase ``p`` runs at ``closes[p-1]`` and
    ends with the end of day of ``closes[p]``. Raises the domain's ``Rejected`` if an event of
    the stream is refused: the stream is built to be valid.
    """
    staging = _Staging(collectors, policies)
    by_phase: dict[int, list[ReplayEvent]] = {}
    for loan_events in events.values():
        for event in loan_events:
            by_phase.setdefault(event.phase, []).append(event)
    for phase in range(1, len(closes)):
        for event in by_phase.get(phase, ()):
            staging.apply(event, closes[phase - 1])
        staging.end_of_day(closes[phase])
    final = closes[-1]
    views = {}
    for loan_id, state in staging.states.items():
        shown = state
        if final > state.business_date:  # the API ages for display, stores nothing
            shown = age_to(state, final, policies.for_product(state.product)).state
        views[loan_id] = view(shown)
    expected = Expected(staging.states, views, staging.outbound)
    for outbound in staging.outbound.values():
        for type_, data in outbound:
            if type_ not in ("repayment.applied", "repayment.unapplied"):
                continue
            expected.applied += type_ == "repayment.applied"
            if data["collector_id"] is None:
                continue
            key = (data["collector_id"], str(data["value_date"])[:7])
            sign = 1 if type_ == "repayment.applied" else -1
            expected.credits[key] = expected.credits.get(key, Decimal(0)) + \
                sign * Decimal(data["to_arrears"])
    return expected
