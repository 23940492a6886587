"""The append-only incentive ledger: one immutable entry per effect of an event on a collector.

Every entry's id is derived from the identity (source, id) of the event that caused it and the
entry kind, so a redelivered event produces the same id and the storage layer's unique key turns
it into a no-op. Scorecards are folds over these entries, nothing else.

Decisions where PRODUCT.md is silent:

- An entry with nothing to count is not written (a repayment that was all excess credits nothing).
- A claw-back (payment reversal, reversed cure) lands in the original period while it is open,
  otherwise in the period it arrives in; it keeps the original date and stage so its commission is
  reversed at exactly the rate the credit earned.
- Promises (made, kept, broken) count in the month of their `due_on`, so made and kept refer to
  the same cohort.
- Promises and complaints are counted by their business identity, not their event's: the entry
  id derives from (loan_id, promise_id, kind) or (loan_id, complaint_id). A desk re-posting the
  same promise or complaint under a fresh CloudEvent id, or staging publishing `promise.kept`
  again (kept -> open after a reversal -> kept), counts once.
- A `promise.broken` supersedes a `promise.kept` of the same promise (staging publishes it when
  a reversal breaks a kept promise): it adds a `promise_kept_reversed` entry that takes the kept
  count and its bonus back, in the due month while open (else the first open month after it).
- A complaint counts in the period it arrives in (the caller's current incentive period): the
  event carries no business date. Without `collector_id` it goes to the loan's active assignee;
  with neither, nobody is penalised.
- A cure is `stage.changed` to `current` from another stage, for a reason other than `closed`
  (a written-off or sold loan is not cured), on a business date the collector owned the case.
  A `stage.changed` from `current` with reason `reversal` reverses the loan's last cure.
- Cases assigned: a `case.assigned` to a collector other than `previous_collector_id`, with the
  loan's arrears as last seen on `stage.changed` (0 when staging has not published any).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from hashlib import blake2b
from typing import Final

from services.incentives.domain.assignment import Assignment
from services.incentives.domain.events import (
    Event,
    MalformedEvent,
    data_of,
    day,
    identity,
    money,
    optional_text,
    text,
)
from services.incentives.domain.periods import (
    business_days_between,
    check_period,
    period_bounds,
    period_of,
)

ZERO: Final = Decimal(0)


class EntryKind(StrEnum):
    CREDIT = "credit"
    CLAWBACK = "clawback"
    CASE_ASSIGNED = "case_assigned"
    CURE = "cure"
    CURE_REVERSED = "cure_reversed"
    PROMISE_MADE = "promise_made"
    PROMISE_KEPT = "promise_kept"
    PROMISE_BROKEN = "promise_broken"
    PROMISE_KEPT_REVERSED = "promise_kept_reversed"
    COMPLAINT = "complaint"


@dataclass(frozen=True, slots=True)
class CreditEntry:
    """One ledger entry. `amount` is signed: credits positive, claw-backs negative.

    `on` is the business date that selects the scheme version (value date of a credit, date of a
    cure, due date of a promise); `period` is the month the entry counts in.
    """

    entry_id: str
    kind: EntryKind
    collector_id: str
    period: str
    loan_id: str
    on: date
    amount: Decimal = ZERO
    currency: str | None = None
    stage: str | None = None
    team: str | None = None
    severity: str | None = None
    days_to_cure: int | None = None
    event_source: str = ""
    event_id: str = ""


def entry_id_for(source: str, event_id: str, kind: EntryKind) -> str:
    """Deterministic entry id (32 hex digits, valid PostgreSQL `uuid` input): same event and kind,
    same id, however often it is delivered. The source is length-prefixed so no two
    (source, id) pairs can spell the same key.
    """
    key = f"{len(source)}:{source}{event_id}\x1f{kind}".encode()
    return blake2b(key, digest_size=16).hexdigest()


def business_entry_id(fact: str, loan_id: str, fact_id: str, kind: EntryKind) -> str:
    """Entry id of a business fact (a promise, a complaint) of a loan, whatever event carried it.

    The separator \x1e cannot appear in a CloudEvents source, so no event-derived id collides.
    """
    return entry_id_for(f"\x1e{fact}\x1e{loan_id}", fact_id, kind)


def promise_entry_id(loan_id: str, promise_id: str, kind: EntryKind) -> str:
    return business_entry_id("promise", loan_id, promise_id, kind)


def _entry(event: Event, kind: EntryKind, *, entry_id: str | None = None,
           **fields: object) -> CreditEntry:
    source, event_id = identity(event)
    return CreditEntry(
        entry_id=entry_id or entry_id_for(source, event_id, kind),
        kind=kind,
        event_source=source,
        event_id=event_id,
        **fields,  # type: ignore[arg-type]
    )


def _landing_period(original: str, closed_periods: Collection[str], arrival_period: str) -> str:
    return check_period(arrival_period) if original in closed_periods else original


# --- repayments -------------------------------------------------------------------------------


def credit_for_applied(event: Event) -> list[CreditEntry]:
    """A `repayment.applied` credits its `to_arrears` (never `excess`) to its `collector_id`,
    in the month of its value date, tagged with its stage. No collector, or nothing applied to
    arrears: no entry.
    """
    data = data_of(event)
    collector_id = optional_text(data, "collector_id")
    if collector_id is None:
        return []
    amount = money(data, "to_arrears")
    if amount == 0:
        return []
    if amount < 0:
        raise MalformedEvent("data.to_arrears", "must be zero or more")
    value_date = day(data, "value_date")
    source, event_id = identity(event)
    # Built directly rather than through _entry: this is the hot path of the service.
    return [
        CreditEntry(
            entry_id=entry_id_for(source, event_id, EntryKind.CREDIT),
            kind=EntryKind.CREDIT,
            collector_id=collector_id,
            period=period_of(value_date),
            loan_id=text(data, "loan_id"),
            on=value_date,
            amount=amount,
            currency=optional_text(data, "currency"),
            stage=optional_text(data, "stage"),
            event_source=source,
            event_id=event_id,
        )
    ]


def clawback_for_unapplied(
    event: Event, closed_periods: Collection[str], arrival_period: str
) -> list[CreditEntry]:
    """A `repayment.unapplied` claws back the `to_arrears` its payment credited: in the month of
    the value date while that month is open, otherwise in `arrival_period` (the open period the
    reversal arrives in). The original value date and stage are kept for the commission rate.
    """
    data = data_of(event)
    collector_id = optional_text(data, "collector_id")
    if collector_id is None:
        return []
    amount = money(data, "to_arrears")
    if amount == 0:
        return []
    if amount < 0:
        raise MalformedEvent("data.to_arrears", "must be zero or more")
    value_date = day(data, "value_date")
    return [
        _entry(
            event,
            EntryKind.CLAWBACK,
            collector_id=collector_id,
            period=_landing_period(period_of(value_date), closed_periods, arrival_period),
            loan_id=text(data, "loan_id"),
            on=value_date,
            amount=-amount,
            currency=optional_text(data, "currency"),
            stage=optional_text(data, "stage"),
        )
    ]


# --- assignments and cures --------------------------------------------------------------------


def known_arrears(event: Event) -> tuple[Decimal, str | None]:
    """The loan's arrears and currency as published on a `stage.changed`."""
    data = data_of(event)
    return money(data, "arrears"), optional_text(data, "currency")


def entries_for_assigned(
    event: Event, arrears: Decimal | None, currency: str | None
) -> list[CreditEntry]:
    """A `case.assigned` counts one case and the loan's known arrears for the new collector,
    in the month of its business date. A re-assignment to the same collector counts nothing.
    """
    data = data_of(event)
    collector_id = text(data, "collector_id")
    if optional_text(data, "previous_collector_id") == collector_id:
        return []
    on = day(data, "business_date")
    return [
        _entry(
            event,
            EntryKind.CASE_ASSIGNED,
            collector_id=collector_id,
            period=period_of(on),
            loan_id=text(data, "loan_id"),
            on=on,
            amount=arrears if arrears is not None else ZERO,
            currency=currency,
            stage=optional_text(data, "stage"),
            team=optional_text(data, "team"),
        )
    ]


def cure_for_stage_changed(
    event: Event, assignment: Assignment | None, holidays: frozenset[date] = frozenset()
) -> list[CreditEntry]:
    """A `stage.changed` to `current` cures the loan for the collector who owned it that day.

    `days_to_cure` counts business days (weekdays minus `holidays`) from assignment to cure.
    """
    data = data_of(event)
    if data.get("to_stage") != "current" or data.get("from_stage") == "current":
        return []
    if data.get("reason") == "closed":
        return []
    on = day(data, "business_date")
    loan_id = text(data, "loan_id")
    if assignment is None or assignment.loan_id != loan_id or not assignment.covers(on):
        return []
    return [
        _entry(
            event,
            EntryKind.CURE,
            collector_id=assignment.collector_id,
            period=period_of(on),
            loan_id=loan_id,
            on=on,
            currency=optional_text(data, "currency"),
            stage=optional_text(data, "from_stage"),
            team=assignment.team,
            days_to_cure=business_days_between(assignment.assigned_on, on, holidays),
        )
    ]


def cure_reversal_for_stage_changed(
    event: Event,
    last_cure: CreditEntry | None,
    closed_periods: Collection[str],
    arrival_period: str,
) -> list[CreditEntry]:
    """A `stage.changed` out of `current` because a payment was reversed undoes the loan's last
    cure (`last_cure`, kept by the caller per loan): same collector, date and days to cure, in
    the cure's period while open, otherwise in `arrival_period`.
    """
    data = data_of(event)
    if data.get("from_stage") != "current" or data.get("to_stage") == "current":
        return []
    if data.get("reason") != "reversal" or last_cure is None:
        return []
    if last_cure.kind is not EntryKind.CURE or last_cure.loan_id != text(data, "loan_id"):
        return []
    return [
        _entry(
            event,
            EntryKind.CURE_REVERSED,
            collector_id=last_cure.collector_id,
            period=_landing_period(last_cure.period, closed_periods, arrival_period),
            loan_id=last_cure.loan_id,
            on=last_cure.on,
            currency=last_cure.currency,
            stage=last_cure.stage,
            team=last_cure.team,
            days_to_cure=last_cure.days_to_cure,
        )
    ]


# --- promises and complaints ------------------------------------------------------------------

_PROMISE_KINDS: Final = {
    "promise.made": EntryKind.PROMISE_MADE,
    "promise.kept": EntryKind.PROMISE_KEPT,
    "promise.broken": EntryKind.PROMISE_BROKEN,
}


def entry_for_promise(event: Event, kept_counted: bool = False) -> list[CreditEntry]:
    """`promise.made`, `promise.kept` or `promise.broken`: one entry for its collector, in the
    month of `due_on`, with the promise's business id. The amount is the promised amount.

    `kept_counted`: the ledger holds this promise's `promise_kept` entry (its id is
    `promise_entry_id(loan_id, promise_id, EntryKind.PROMISE_KEPT)`); a `promise.broken` then
    also reverses it.
    """
    kind = _PROMISE_KINDS.get(event.get("type", ""))
    if kind is None:
        raise MalformedEvent("type", "must be promise.made, promise.kept or promise.broken")
    data = data_of(event)
    due_on = day(data, "due_on")
    loan_id, promise_id = text(data, "loan_id"), text(data, "promise_id")
    kinds = [kind]
    if kind is EntryKind.PROMISE_BROKEN and kept_counted:
        kinds.append(EntryKind.PROMISE_KEPT_REVERSED)
    return [
        _entry(
            event,
            k,
            entry_id=promise_entry_id(loan_id, promise_id, k),
            collector_id=text(data, "collector_id"),
            period=period_of(due_on),
            loan_id=loan_id,
            on=due_on,
            amount=money(data, "amount"),
        )
        for k in kinds
    ]


def entry_for_complaint(
    event: Event, assignment: Assignment | None, arrival_period: str
) -> list[CreditEntry]:
    """A `complaint.recorded` counts against its `collector_id`, else the loan's active assignee,
    in `arrival_period`. With neither, no entry.
    """
    data = data_of(event)
    severity = data.get("severity")
    if severity not in ("minor", "major"):
        raise MalformedEvent("data.severity", "must be minor or major")
    loan_id = text(data, "loan_id")
    collector_id = optional_text(data, "collector_id")
    if collector_id is None and assignment is not None and assignment.loan_id == loan_id:
        collector_id = assignment.collector_id if assignment.active else None
    if collector_id is None:
        return []
    start, _ = period_bounds(arrival_period)
    return [
        _entry(
            event,
            EntryKind.COMPLAINT,
            entry_id=business_entry_id(
                "complaint", loan_id, text(data, "complaint_id"), EntryKind.COMPLAINT
            ),
            collector_id=collector_id,
            period=arrival_period,
            loan_id=loan_id,
            on=start,
            severity=severity,
        )
    ]
