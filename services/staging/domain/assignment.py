"""Who owns a case: the request the domain raises and the pure choice of a collector.

Decisions:

- Load is ``open_cases / capacity``, compared exactly (cross-multiplied, no floats); ties go
  to the smallest collector id. Capacity is a target, not a hard limit: when every active
  collector of the team is full the case still goes to the least loaded one, since an
  unowned case is worse. A collector with capacity 0 takes no case.
- A relationship-manager stage goes to the loan's relationship manager, who need not be in the
  roster; without one, to the fallback team of the stage.
- With no eligible collector the case waits in the team's queue (collector None, team set).
- A case whose current owner is an eligible collector of the team asked for stays with them;
  else it goes back to the ``preferred`` collector if eligible: the one who owned it when a
  payment that moved it down arrived, now reversed (as if the payment had never come).
  The request that can meet this is a relationship-manager stage whose manager is inactive
  (the service turns it into a team request): the domain raises it again on every event,
  and the owner's own case in their load made the least-loaded choice move the case back
  and forth between the team's collectors, a ``case.assigned`` each time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from shared.frozen import quick_init


@quick_init
@dataclass(frozen=True)
class CollectorLoad:
    collector_id: str
    team: str
    capacity: int
    active: bool
    open_cases: int


@quick_init
@dataclass(frozen=True)
class AssignmentRequest:
    """A loan entered a stage whose owner the domain cannot pick without the roster."""

    loan_id: str
    stage: str
    owner_kind: str  # relationship_manager or team
    team: str | None  # the team, or the relationship manager's fallback team
    relationship_manager_id: str | None
    previous_collector_id: str | None
    business_date: date
    # who the case should go back to if they fit: the owner a reversed payment had released
    preferred_collector_id: str | None = None


def _eligible(c: CollectorLoad, team: str) -> bool:
    return c.active and c.team == team and c.capacity > 0


def _less_loaded(a: CollectorLoad, b: CollectorLoad) -> bool:
    """``a`` before ``b``: open/capacity compared exactly, by cross-multiplying (both
    capacities are positive), then by id."""
    left, right = a.open_cases * b.capacity, b.open_cases * a.capacity
    return left < right or (left == right and a.collector_id < b.collector_id)


def choose_collector(candidates: Iterable[CollectorLoad], team: str) -> str | None:
    """The least-loaded active collector of ``team`` relative to capacity, ties by id."""
    best: CollectorLoad | None = None
    for c in candidates:
        if _eligible(c, team) and (best is None or _less_loaded(c, best)):
            best = c
    return None if best is None else best.collector_id


def resolve_assignment(request: AssignmentRequest,
                       candidates: Iterable[CollectorLoad]) -> tuple[str | None, str | None]:
    """``(collector_id, team)`` for a request; the team is None for a relationship manager."""
    if request.owner_kind == "relationship_manager" and request.relationship_manager_id:
        return request.relationship_manager_id, None
    if request.team is None:
        return None, None
    pool = list(candidates)
    for keep in (request.previous_collector_id, request.preferred_collector_id):
        if any(c.collector_id == keep and _eligible(c, request.team) for c in pool):
            return keep, request.team
    return choose_collector(pool, request.team), request.team
