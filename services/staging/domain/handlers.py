"""One pure function per inbound event: ``apply_x(state, data, business_date, policy) -> Outcome``.

``business_date`` is the service's current business date; ``policy`` is the policy resolved for
the loan's product. Every handler first ages the loan to ``business_date`` (a loan end of day
skipped, because nothing was due to change, is caught up here), then applies the event. A
handler raises :class:`Rejected` before returning anything, and never mutates its input, so a
rejected event leaves the stored state as it was.

Owners: after every event the owner is reconciled with the stage. Stages owned by nobody or by
automation unassign at once (``case.unassigned``, with ``collector_id`` the collector who lost
the case); stages owned by a relationship manager or a team whose current owner does not fit
return an :class:`AssignmentRequest`, which the service resolves against its roster
(``assignment.resolve_assignment``) and records with :func:`apply_assignment`. A reassignment
from A to B is one ``case.assigned`` with ``previous_collector_id`` A. A reversal's request
prefers the collector the reversed payment's arrival had released (``owner_at_receipt``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from services.staging.domain import outbound
from services.staging.domain.assignment import AssignmentRequest
from services.staging.domain.delinquency import (
    days_past_due,
    next_transition_date,
    select_stage,
    stage_before_special,
)
from services.staging.domain.errors import Rejected
from services.staging.domain.flags import FLAG_NAMES, clear_flag, expire_flags, raise_flag
from services.staging.domain.ledger import (
    Ledger,
    LedgerChange,
    record_missed_payment,
    record_repayment,
    reverse_repayment,
)
from services.staging.domain.loan import (
    CLOSED_STAGE,
    CLOSED_STATUS,
    LoanState,
    OwnerPeriod,
    StageChange,
)
from services.staging.domain.loan import Owner as CaseOwner
from services.staging.domain.outbound import Emitted
from services.staging.domain.policy import Policy
from services.staging.domain.promises import CANCELLED, OPEN, Promise, evaluate_promises
from services.staging.domain.promises import promise_outcomes as changed_promises
from services.staging.domain.values import business_date as as_date
from services.staging.domain.values import money, optional_date, text
from shared.frozen import quick_init

CLOSE_REASONS = ("repaid", "written_off", "sold", "restructured")


@quick_init
@dataclass(frozen=True)
class Outcome:
    state: LoanState
    events: tuple[Emitted, ...] = ()
    assignment: AssignmentRequest | None = None


# --- the steps every handler shares --------------------------------------------------------


def _require_open(state: LoanState) -> None:
    if state.status == CLOSED_STATUS:
        raise Rejected("loan_closed", state.loan_id)


def _promises(state: LoanState, policy: Policy) -> tuple[LoanState, list[Emitted]]:
    if not state.promises:
        return state, []
    after = evaluate_promises(state.promises, state.ledger.payments, policy.promise_grace_days,
                              state.business_date)
    events = [outbound.promise_outcome(state, p) for p in changed_promises(state.promises, after)]
    return state.evolve(promises=after), events


def _settle(state: LoanState, policy: Policy, reason: str,
            floor: str | None = None) -> tuple[LoanState, list[Emitted]]:
    dpd = days_past_due(state.ledger, state.flags, policy.tolerance, state.business_date)
    flags, arrears, memory = state.flags, state.arrears, state.stage_before_special
    stage = select_stage(state.stage, dpd, arrears, flags, policy, floor=floor,
                         before_special=memory)
    if flags.special or memory is not None:
        memory = stage_before_special(state.stage, memory, dpd, arrears, flags, policy,
                                      floor=floor)
    if stage == state.stage:
        if (dpd == state.dpd and policy.version == state.policy_version
                and memory == state.stage_before_special):
            return state, []  # the usual event: nothing to record
        return state.evolve(dpd=dpd, policy_version=policy.version,
                            stage_before_special=memory), []
    change = StageChange(state.stage, stage, dpd, reason, state.business_date)
    state = state.evolve(dpd=dpd, policy_version=policy.version, stage=stage,
                         stage_before_special=memory, history=(*state.history, change))
    return state, [outbound.stage_changed(state, change)]


def _catch_up(state: LoanState, on: date, policy: Policy) -> tuple[LoanState, list[Emitted]]:
    """Age the loan to ``on``, stopping at every transition date in between.

    A loan several business days behind (end of day skipped it, staging caught up after an
    outage, closes replayed back to back) gets the same stage history and events as one aged
    every day: early is entered on its own date before negotiation, and so on.

    A loan last evaluated under another policy version is re-evaluated even when it is
    already at ``on``: after ``PUT /v1/policy`` its stage may be one the new policy lacks,
    and every step after this one reads the stage's rule.
    """
    if state.status == CLOSED_STATUS:
        return state, []
    if on <= state.business_date:
        if state.policy_version == policy.version:
            return state, []
        return _age_once(state, state.business_date, policy)
    events: list[Emitted] = []
    for _ in range(1000):  # a loan has a handful of transitions; the bound is a safety net
        step = next_transition_date(state, policy)
        if step is None or step >= on or step <= state.business_date:
            break
        state, stepped = _age_once(state, step, policy)
        events += stepped
    state, stepped = _age_once(state, on, policy)
    return state, events + stepped


def _age_once(state: LoanState, on: date, policy: Policy) -> tuple[LoanState, list[Emitted]]:
    state = state.evolve(business_date=on, flags=expire_flags(state.flags, on))
    state, promise_events = _promises(state, policy)
    state, stage_events = _settle(state, policy, "aging")
    return state, promise_events + stage_events


def _set_owner(state: LoanState, collector_id: str | None,
               team: str | None) -> tuple[LoanState, list[Emitted]]:
    previous = state.owner
    if previous.collector_id == collector_id and previous.team == team:
        return state, []
    history = state.owner_history
    if collector_id != previous.collector_id:
        if history and history[-1].since == state.business_date:
            history = history[:-1]  # only the last owner of a day matters
        history = (*history, OwnerPeriod(state.business_date, collector_id))
    state = state.evolve(owner=CaseOwner(collector_id, team), owner_history=history)
    if collector_id is not None:
        kind, subject = "case.assigned", collector_id
    elif previous.collector_id is not None:
        kind, subject = "case.unassigned", previous.collector_id
    else:
        return state, []
    return state, [outbound.assignment(kind, state, subject, team or previous.team,
                                       previous.collector_id)]


def _wanted_owner(state: LoanState, policy: Policy) -> tuple[str, str | None]:
    if state.stage == CLOSED_STAGE:
        return "none", None
    rule = policy.stage(state.stage)
    return rule.owner, rule.team


def _request(state: LoanState, policy: Policy,
             preferred: str | None = None) -> AssignmentRequest:
    kind, team = _wanted_owner(state, policy)
    return AssignmentRequest(state.loan_id, state.stage, kind, team,
                             state.relationship_manager_id, state.owner.collector_id,
                             state.business_date, preferred)


def _finish(state: LoanState, policy: Policy, events: list[Emitted],
            preferred: str | None = None) -> Outcome:
    """Reconcile the owner with the stage, then index the next change by time alone."""
    kind, team = _wanted_owner(state, policy)
    owner, request = state.owner, None
    if kind in ("none", "automated"):
        state, owner_events = _set_owner(state, None, None)
        events = events + owner_events
    elif kind == "relationship_manager" and state.relationship_manager_id:
        if owner.collector_id != state.relationship_manager_id:
            request = _request(state, policy, preferred)
    elif owner.collector_id is None or owner.team != team:
        request = _request(state, policy, preferred)
    upcoming = next_transition_date(state, policy)
    if upcoming != state.next_transition_date:
        state = state.evolve(next_transition_date=upcoming)
    return Outcome(state, tuple(events), request)


def _reallocations(state: LoanState, before: Ledger, change: LedgerChange,
                   dpd_before: int) -> list[Emitted]:
    events = []
    for moved in change.reallocations:
        payment = before.payment(moved.before.payment_id)
        assert payment is not None
        for kind, allocation in (("repayment.unapplied", moved.before),
                                 ("repayment.applied", moved.after)):
            events.append(outbound.repayment(kind, state, allocation, payment.value_date,
                                             dpd_before=dpd_before, reason="reallocated"))
    return events


def _lower(policy: Policy, stage: str, than: str) -> bool:
    rank, other = policy.rank(stage), policy.rank(than)
    return rank is not None and other is not None and rank < other


# --- handlers ------------------------------------------------------------------------------


def open_loan(data: dict[str, Any], business_date: date, policy: Policy) -> Outcome:
    """``loan.opened``: a new loan, current, owned by nobody."""
    currency = text(data, "currency")
    state = LoanState(
        loan_id=text(data, "loan_id"), borrower_id=text(data, "borrower_id"),
        product=text(data, "product"), currency=currency,
        principal=money(data["principal"], "principal"),
        opened_on=as_date(data["opened_on"], "opened_on"), business_date=business_date,
        relationship_manager_id=data.get("relationship_manager_id"),
        branch_id=data.get("branch_id"), ledger=Ledger(currency), policy_version=policy.version,
    )
    return _finish(state, policy, [])


def apply_payment_missed(state: LoanState, data: dict[str, Any], business_date: date,
                         policy: Policy) -> Outcome:
    _require_open(state)
    due = as_date(data["due_date"], "due_date")
    unpaid = money(data["amount_unpaid"], "amount_unpaid")
    state, events = _catch_up(state, business_date, policy)
    before, dpd_before = state.ledger, state.dpd
    change = record_missed_payment(before, data["instalment_no"], due, unpaid)
    state, stage_events = _settle(state.evolve(ledger=change.ledger), policy, "missed_payment")
    events += _reallocations(state, before, change, dpd_before) + stage_events
    return _finish(state, policy, events)


def apply_repayment_received(state: LoanState, data: dict[str, Any], business_date: date,
                             policy: Policy) -> Outcome:
    _require_open(state)
    payment_id = text(data, "payment_id")
    amount = money(data["amount"], "amount")
    value_date = as_date(data["value_date"], "value_date")
    state, events = _catch_up(state, business_date, policy)
    before, dpd_before = state.ledger, state.dpd
    change = record_repayment(before, payment_id, amount, text(data, "currency"), value_date,
                              received_on=state.business_date, seq=state.next_seq)
    stage_before = state.stage
    credited = {**state.credited, payment_id: state.owner_on(value_date)}
    state = state.evolve(ledger=change.ledger, next_seq=state.next_seq + 1, credited=credited)
    state, promise_events = _promises(state, policy)
    state, stage_events = _settle(state, policy, "repayment")
    if _lower(policy, state.stage, stage_before):
        # Only a payment that moved the loan down leaves a floor for its reversal, and the
        # owner it found (released or replaced by `_finish`) to give the case back to.
        state = state.evolve(stage_at_receipt={**state.stage_at_receipt,
                                               payment_id: stage_before})
        if state.owner.collector_id is not None:
            state = state.evolve(owner_at_receipt={**state.owner_at_receipt,
                                                   payment_id: state.owner.collector_id})
    assert change.applied is not None
    applied = outbound.repayment("repayment.applied", state, change.applied, value_date,
                                 dpd_before=dpd_before, reason="received")
    events += [applied, *_reallocations(state, before, change, dpd_before)]
    return _finish(state, policy, events + promise_events + stage_events)


def apply_repayment_reversed(state: LoanState, data: dict[str, Any], business_date: date,
                             policy: Policy) -> Outcome:
    """Un-apply a payment as if it had never come; allowed on a closed loan (claw-back)."""
    payment_id = text(data, "payment_id")
    state, events = _catch_up(state, business_date, policy)
    before, dpd_before = state.ledger, state.dpd
    change = reverse_repayment(before, payment_id)
    payment = before.payment(payment_id)
    assert payment is not None and change.unapplied is not None
    floor = state.stage_at_receipt.get(payment_id)
    preferred = state.owner_at_receipt.get(payment_id)
    receipts = {k: v for k, v in state.stage_at_receipt.items() if k != payment_id}
    owners = {k: v for k, v in state.owner_at_receipt.items() if k != payment_id}
    state = state.evolve(ledger=change.ledger, stage_at_receipt=receipts,
                         owner_at_receipt=owners)
    promise_events: list[Emitted] = []
    stage_events: list[Emitted] = []
    if state.status != CLOSED_STATUS:
        state, promise_events = _promises(state, policy)
        state, stage_events = _settle(state, policy, "reversal", floor=floor)
    unapplied = outbound.repayment("repayment.unapplied", state, change.unapplied,
                                   payment.value_date, dpd_before=dpd_before, reason="reversed")
    events += [unapplied, *_reallocations(state, before, change, dpd_before)]
    return _finish(state, policy, events + promise_events + stage_events, preferred)


def _flag_name(data: dict[str, Any]) -> str:
    name = data.get("flag")
    if name not in FLAG_NAMES:
        raise Rejected("unknown_flag", str(name))
    return str(name)


def apply_flag_raised(state: LoanState, data: dict[str, Any], business_date: date,
                      policy: Policy) -> Outcome:
    _require_open(state)
    name, until = _flag_name(data), optional_date(data.get("until"), "until")
    state, events = _catch_up(state, business_date, policy)
    flags = raise_flag(state.flags, name, state.business_date, until, data.get("note") or "")
    state = state.evolve(flags=expire_flags(flags, state.business_date))
    state, stage_events = _settle(state, policy, "flag")
    return _finish(state, policy, events + stage_events)


def apply_flag_cleared(state: LoanState, data: dict[str, Any], business_date: date,
                       policy: Policy) -> Outcome:
    _require_open(state)
    name = _flag_name(data)
    state, events = _catch_up(state, business_date, policy)
    state = state.evolve(flags=clear_flag(state.flags, name, state.business_date))
    state, stage_events = _settle(state, policy, "flag")
    return _finish(state, policy, events + stage_events)


def apply_promise_made(state: LoanState, data: dict[str, Any], business_date: date,
                       policy: Policy) -> Outcome:
    _require_open(state)
    promise_id, collector_id = text(data, "promise_id"), text(data, "collector_id")
    amount = money(data["amount"], "amount")
    due_on = as_date(data["due_on"], "due_on")
    if amount <= 0:
        raise Rejected("invalid_amount", "amount must be positive")
    if any(p.promise_id == promise_id for p in state.promises):
        raise Rejected("duplicate_promise", promise_id)
    state, events = _catch_up(state, business_date, policy)
    if due_on < state.business_date:
        raise Rejected("invalid_due_on", "due_on is before the business date")
    promise = Promise(promise_id, collector_id, amount, due_on, state.business_date,
                      state.next_seq)
    state = state.evolve(promises=(*state.promises, promise), next_seq=state.next_seq + 1)
    return _finish(state, policy, events)


def apply_loan_closed(state: LoanState, data: dict[str, Any], business_date: date,
                      policy: Policy) -> Outcome:
    """The loan leaves collections: pseudo-stage ``closed``, owner released, promises cancelled."""
    _require_open(state)
    if data.get("reason") not in CLOSE_REASONS:
        raise Rejected("invalid_reason", str(data.get("reason")))
    state, events = _catch_up(state, business_date, policy)
    promises = tuple(replace(p, status=CANCELLED) if p.status == OPEN else p
                     for p in state.promises)
    change = StageChange(state.stage, CLOSED_STAGE, state.dpd, "closed", state.business_date)
    state = state.evolve(status=CLOSED_STATUS, stage=CLOSED_STAGE, promises=promises,
                         history=(*state.history, change))
    return _finish(state, policy, [*events, outbound.stage_changed(state, change)])


def age_to(state: LoanState, business_date: date, policy: Policy) -> Outcome:
    """``business_day.closed``: age the loan to ``business_date``; an earlier date is a no-op."""
    state, events = _catch_up(state, business_date, policy)
    return _finish(state, policy, events)


def apply_assignment(state: LoanState, collector_id: str | None, team: str | None,
                     policy: Policy) -> Outcome:
    """Record the owner chosen for an :class:`AssignmentRequest` (None: wait in the queue)."""
    state, events = _set_owner(state, collector_id, team)
    return Outcome(state.evolve(next_transition_date=next_transition_date(state, policy)),
                   tuple(events))


def request_reassignment(state: LoanState, policy: Policy) -> AssignmentRequest | None:
    """A fresh request for the current stage, e.g. when the owner was deactivated."""
    kind, _ = _wanted_owner(state, policy)
    return None if kind in ("none", "automated") else _request(state, policy)


Handler = Callable[[LoanState, dict[str, Any], date, Policy], Outcome]

HANDLERS: dict[str, Handler] = {
    "payment.missed": apply_payment_missed,
    "repayment.received": apply_repayment_received,
    "repayment.reversed": apply_repayment_reversed,
    "case.flag.raised": apply_flag_raised,
    "case.flag.cleared": apply_flag_cleared,
    "promise.made": apply_promise_made,
    "loan.closed": apply_loan_closed,
}
