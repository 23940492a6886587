"""End of day's shortcut: an unowned, plain loan ageing into its next stage.

Most of the loans end of day moves are changed by time alone: a loan with a missed instalment and
nothing else going on enters early, then negotiation, on the day its DPD crosses the next
threshold. For those, :func:`handlers.age_to` and the owner it asks for come down to a few
values computed from a handful of facts (:class:`DueLoan`, read from the stored document and
two columns, :func:`due_loan`) and a patch of the document (:func:`patch`), with no
``LoanState`` built, no ledger replayed and one statement per chunk to write them. Everything
else takes the general path, and so does a loan here whenever :func:`plain_step` returns None.

A loan is plain when all of these hold:

- open, last evaluated under the policy version in force, owned by nobody (no collector, no
  team), in a DPD-ranged stage that has a next one;
- no flag in force, no hardship pause ever, no open promise (DPD is then the business date
  minus the oldest unpaid due date; a kept or broken promise cannot change by time); with no
  special flag in force the loan has no ``stage_before_special`` either (it is dropped at the
  evaluation that clears the last one), so a loan that once was ``special`` needs nothing more;
  a document that holds one anyway is declined all the same;
- arrears above the tolerance;
- the next stage's threshold is crossed after the loan's business date and on or before the
  new one, and the new DPD is still inside that stage (exactly one step).

The step is what ageing gives: the change is dated the day the threshold was crossed
(``oldest + dpd_min``) with that day's DPD, as ``_catch_up`` dates the change a skipped
business day would have made; DPD, business date and next transition are those of the new
date; the owner the new stage asks for is an :class:`AssignmentRequest`, resolved by the
service against its roster exactly as for the general path, then recorded with
:func:`assigned`. Since the loan was owned by nobody and its owner history only holds dates up
to its business date, an assignment only appends to that history.

``tests/unit/staging/test_staging_shortcut.py`` proves, for generated loans, policies and
rosters, that every step gives exactly the general path's document and events, and
``tests/integration/test_staging_eod.py`` compares whole end-of-day runs through PostgreSQL
(loans, history, events, roster, portfolio) with and without the shortcut.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from services.staging.domain import outbound
from services.staging.domain.assignment import AssignmentRequest
from services.staging.domain.loan import OPEN_STATUS, Owner, StageChange
from services.staging.domain.outbound import Emitted
from services.staging.domain.policy import Policy
from services.staging.domain.values import day, iso


class DueLoan(NamedTuple):  # a tuple, not a frozen dataclass: built for every due loan
    """What the shortcut reads of a due loan."""

    loan_id: str
    borrower_id: str
    product: str
    currency: str
    status: str
    stage: str
    arrears: Decimal
    business_date: date
    oldest_due_date: date | None  # the ledger's oldest unpaid due date
    policy_version: int | None
    collector_id: str | None
    team: str | None
    relationship_manager_id: str | None
    quiet: bool  # no flag in force, no hardship pause ever, no open promise


_NO_FLAGS: dict[str, list[Any]] = {"active": [], "pauses": []}  # Flags().to_dict()


def due_loan(doc: Mapping[str, Any], arrears: Decimal, oldest_due_date: date | None) -> DueLoan:
    """The facts of a stored loan: its document (``LoanState.to_dict``) and the two values
    the document does not hold, derived from its ledger (stored beside it)."""
    owner = doc["owner"]
    promises = doc["promises"]
    quiet = doc["flags"] == _NO_FLAGS and "stage_before_special" not in doc and (
        not promises or all(p["status"] != "open" for p in promises))
    return DueLoan(doc["loan_id"], doc["borrower_id"], doc["product"], doc["currency"],
                   doc["status"], doc["stage"], arrears, day(doc["business_date"]),
                   oldest_due_date, doc.get("policy_version"), owner["collector_id"],
                   owner["team"], doc.get("relationship_manager_id"), quiet)


class PlainStep(NamedTuple):
    loan: DueLoan
    change: StageChange
    dpd: int  # on the new business date
    business_date: date
    next_transition_date: date | None
    events: tuple[Emitted, ...]  # the stage change
    assignment: AssignmentRequest | None  # what the new stage asks for, if anything


def plain_step(loan: DueLoan, on: date, policy: Policy) -> PlainStep | None:
    """The outcome of ageing ``loan`` to ``on`` if it is plain (see the module), else None."""
    oldest = loan.oldest_due_date
    if (loan.status != OPEN_STATUS or not loan.quiet or oldest is None
            or loan.policy_version != policy.version or loan.arrears <= policy.tolerance
            or loan.collector_id is not None or loan.team is not None):
        return None
    rank = policy.rank(loan.stage)
    if rank is None or rank + 1 >= len(policy.ranged):
        return None
    entered = policy.ranged[rank + 1]
    if entered.dpd_min is None or entered.dpd_min < 1:
        return None
    crossed = oldest + timedelta(days=entered.dpd_min)
    dpd = (on - oldest).days
    if not loan.business_date < crossed <= on or not entered.holds(dpd):
        return None
    change = StageChange(loan.stage, entered.name, entered.dpd_min, "aging", crossed)
    following = policy.ranged[rank + 2] if rank + 2 < len(policy.ranged) else None
    next_date = None
    if following is not None and following.dpd_min is not None:
        next_date = on + timedelta(days=max(following.dpd_min - dpd, 1))
    event = outbound.stage_change(loan.loan_id, loan.borrower_id, loan.product, loan.arrears,
                                  loan.currency, change)
    request = None
    rm = loan.relationship_manager_id
    if entered.owner not in ("none", "automated"):
        request = AssignmentRequest(loan.loan_id, entered.name, entered.owner, entered.team, rm,
                                    None, on)
    return PlainStep(loan, change, dpd, on, next_date, (event,), request)


def assigned(step: PlainStep, collector_id: str | None,
             team: str | None) -> tuple[Owner, tuple[Emitted, ...]]:
    """The owner chosen for ``step.assignment`` and its event, as ``apply_assignment`` records
    them for a loan owned by nobody (no collector: the case waits in the team's queue)."""
    owner = Owner(collector_id, team)
    if collector_id is None:
        return owner, ()
    event = outbound.owner_change("case.assigned", step.loan.loan_id, step.change.to_stage,
                                  step.business_date, collector_id, team, None)
    return owner, (event,)


def patch(doc: dict[str, Any], step: PlainStep, owner: Owner) -> dict[str, Any]:
    """The document after ``step`` (in place), as ``LoanState.to_dict`` of the general path's
    outcome: ageing's top-level values, the change appended to the history, the owner and,
    for a collector, its start appended to the owner history (see the module)."""
    doc.update(stage=step.change.to_stage, dpd=step.dpd,
               business_date=iso(step.business_date),
               next_transition_date=iso(step.next_transition_date),
               owner={"collector_id": owner.collector_id, "team": owner.team})
    doc["history"].append(step.change.to_dict())
    if owner.collector_id is not None:
        doc["owner_history"].append([iso(step.business_date), owner.collector_id])
    return doc
