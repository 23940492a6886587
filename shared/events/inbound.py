"""Data models of the inbound event types (PRODUCT.md 3.2), published by core banking.

Subject is the loan id unless said otherwise; the registry records which field the subject must
equal and `parse_event` enforces it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StrictBool, model_validator
from pydantic_core import PydanticCustomError

from shared.events.base import EventData, field_error
from shared.events.enums import (
    ComplaintSeverity,
    ContactChannel,
    Flag,
    Language,
    LoanCloseReason,
    Product,
    RepaymentChannel,
)
from shared.events.fields import (
    BusinessDate,
    Email,
    Id,
    Note,
    Phone,
    PositiveInt,
    Text,
    TimeZoneName,
)
from shared.money import Currency, NonNegativeMoney, PositiveMoney

__all__ = [
    "BorrowerUpdated",
    "BusinessDayClosed",
    "CaseFlagCleared",
    "CaseFlagRaised",
    "ComplaintRecorded",
    "InstalmentUpcoming",
    "LoanClosed",
    "LoanOpened",
    "PaymentMissed",
    "PromiseMade",
    "RepaymentReceived",
    "RepaymentReversed",
]


def _unique_channels(channels: list[ContactChannel]) -> list[ContactChannel]:
    if len(set(channels)) != len(channels):
        raise PydanticCustomError("unique_channels", "each channel may appear only once")
    return channels


class LoanOpened(EventData):
    loan_id: Id
    borrower_id: Id
    product: Product
    currency: Currency
    principal: PositiveMoney
    opened_on: BusinessDate
    relationship_manager_id: Id | None = None
    branch_id: Id | None = None


class BorrowerUpdated(EventData):
    """Full snapshot of a borrower's contact profile. Subject: the borrower id."""

    borrower_id: Id
    name: Text
    phone: Phone
    email: Email
    timezone: TimeZoneName
    language: Language
    opted_out_channels: Annotated[list[ContactChannel], AfterValidator(_unique_channels)]
    vulnerable: StrictBool


class InstalmentUpcoming(EventData):
    """Pre-due warning, typically three business days before `due_date`."""

    loan_id: Id
    instalment_no: PositiveInt
    due_date: BusinessDate
    amount_due: PositiveMoney


class PaymentMissed(EventData):
    loan_id: Id
    instalment_no: PositiveInt
    due_date: BusinessDate
    amount_due: PositiveMoney
    amount_unpaid: NonNegativeMoney

    @model_validator(mode="after")
    def _unpaid_within_due(self) -> PaymentMissed:
        if self.amount_unpaid > self.amount_due:
            raise field_error("amount_unpaid", "amount_unpaid cannot exceed amount_due")
        return self


class RepaymentReceived(EventData):
    loan_id: Id
    payment_id: Id
    amount: PositiveMoney
    currency: Currency
    value_date: BusinessDate
    channel: RepaymentChannel


class RepaymentReversed(EventData):
    """A payment taken back (bounced auto-debit, chargeback); `reason` is free text."""

    loan_id: Id
    payment_id: Id
    reason: Text


class _CaseFlag(EventData):
    loan_id: Id
    flag: Flag
    note: Note
    until: BusinessDate | None = None


class CaseFlagRaised(_CaseFlag):
    pass


class CaseFlagCleared(_CaseFlag):
    pass


class PromiseMade(EventData):
    loan_id: Id
    promise_id: Id
    collector_id: Id
    amount: PositiveMoney
    due_on: BusinessDate


class ComplaintRecorded(EventData):
    loan_id: Id
    complaint_id: Id
    collector_id: Id | None = None
    severity: ComplaintSeverity
    note: Note


class LoanClosed(EventData):
    loan_id: Id
    reason: LoanCloseReason


class BusinessDayClosed(EventData):
    """The bank's end of day; topic `calendar`, subject `calendar`."""

    business_date: BusinessDate
