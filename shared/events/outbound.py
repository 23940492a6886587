"""Data models of the outbound event types (PRODUCT.md 3.3), written through each service's outbox.

Beyond the contract table, events that carry money also carry the loan's `currency` (3.1: money
always travels with its currency), so no consumer has to join another topic to read an amount.
"""

from __future__ import annotations

from pydantic import model_validator

from shared.events.base import EventData, field_error
from shared.events.enums import ContactChannel, ContactStatus, Product, Stage, StageChangeReason
from shared.events.fields import BusinessDate, Count, Id, Period, Text, Timestamp
from shared.money import Currency, NonNegativeMoney, NonNegativeRatio, PositiveMoney

__all__ = [
    "CaseAssigned",
    "CaseUnassigned",
    "ContactAttempted",
    "PromiseBroken",
    "PromiseKept",
    "RepaymentApplied",
    "RepaymentUnapplied",
    "ScorecardUpdated",
    "StageChanged",
]


class StageChanged(EventData):
    loan_id: Id
    borrower_id: Id
    product: Product
    from_stage: Stage
    to_stage: Stage
    dpd: Count
    arrears: NonNegativeMoney
    currency: Currency
    business_date: BusinessDate
    reason: StageChangeReason


class _Assignment(EventData):
    loan_id: Id
    collector_id: Id
    team: Id
    stage: Stage
    business_date: BusinessDate
    previous_collector_id: Id | None = None


class CaseAssigned(_Assignment):
    """`collector_id` now owns the case; `previous_collector_id` owned it before, if anyone."""


class CaseUnassigned(_Assignment):
    """`collector_id` no longer owns the case."""


class _RepaymentApplication(EventData):
    loan_id: Id
    payment_id: Id
    amount: PositiveMoney
    to_arrears: NonNegativeMoney
    excess: NonNegativeMoney
    currency: Currency
    value_date: BusinessDate
    stage: Stage
    dpd_before: Count
    dpd_after: Count
    collector_id: Id | None = None

    @model_validator(mode="after")
    def _split_adds_up(self) -> _RepaymentApplication:
        if self.to_arrears + self.excess != self.amount:
            raise field_error("amount", "amount must equal to_arrears + excess")
        return self


class RepaymentApplied(_RepaymentApplication):
    """`collector_id` is the case owner on `value_date` (credited with `to_arrears`)."""


class RepaymentUnapplied(_RepaymentApplication):
    """Exactly what the reversed payment's `repayment.applied` said, now taken back."""


class _PromiseOutcome(EventData):
    loan_id: Id
    promise_id: Id
    collector_id: Id
    amount: PositiveMoney
    paid: NonNegativeMoney
    currency: Currency
    due_on: BusinessDate


class PromiseKept(_PromiseOutcome):
    pass


class PromiseBroken(_PromiseOutcome):
    pass


class ContactAttempted(EventData):
    """One contact decision. `scheduled_for` is required when the contact was deferred."""

    contact_id: Id
    loan_id: Id
    borrower_id: Id
    channel: ContactChannel
    template: Id
    stage: Stage
    status: ContactStatus
    reason: Text
    scheduled_for: Timestamp | None = None

    @model_validator(mode="after")
    def _deferred_has_a_time(self) -> ContactAttempted:
        if self.status is ContactStatus.DEFERRED and self.scheduled_for is None:
            raise field_error("scheduled_for", "a deferred contact needs scheduled_for")
        return self


class ScorecardUpdated(EventData):
    """A collector's scorecard for one month (PRODUCT.md 4.3). Subject: the collector id.

    Rates are 0 when their denominator is 0; `avg_days_to_cure` is null when nothing was cured.
    """

    collector_id: Id
    period: Period
    team: Id
    currency: Currency
    cases_assigned: Count
    arrears_assigned: NonNegativeMoney
    recovered: NonNegativeMoney
    recovery_rate: NonNegativeRatio
    cures: Count
    cure_rate: NonNegativeRatio
    avg_days_to_cure: NonNegativeRatio | None = None
    promises_made: Count
    promises_kept: Count
    kept_rate: NonNegativeRatio
    complaints_minor: Count
    complaints_major: Count
    multiplier: NonNegativeRatio
    payout: NonNegativeMoney
    composite_score: NonNegativeRatio
