"""Event type names (the CloudEvents `type` attribute) and their data models.

Use the constants instead of string literals so a typo fails at import, not in production.
"""

from __future__ import annotations

from typing import Final

from shared.events.inbound import (
    BorrowerUpdated,
    BusinessDayClosed,
    CaseFlagCleared,
    CaseFlagRaised,
    ComplaintRecorded,
    InstalmentUpcoming,
    LoanClosed,
    LoanOpened,
    PaymentMissed,
    PromiseMade,
    RepaymentReceived,
    RepaymentReversed,
)
from shared.events.outbound import (
    CaseAssigned,
    CaseUnassigned,
    ContactAttempted,
    PromiseBroken,
    PromiseKept,
    RepaymentApplied,
    RepaymentUnapplied,
    ScorecardUpdated,
    StageChanged,
)

__all__ = [
    "BORROWER_UPDATED",
    "BUSINESS_DAY_CLOSED",
    "CASE_ASSIGNED",
    "CASE_FLAG_CLEARED",
    "CASE_FLAG_RAISED",
    "CASE_UNASSIGNED",
    "COMPLAINT_RECORDED",
    "CONTACT_ATTEMPTED",
    "INSTALMENT_UPCOMING",
    "LOAN_CLOSED",
    "LOAN_OPENED",
    "PAYMENT_MISSED",
    "PROMISE_BROKEN",
    "PROMISE_KEPT",
    "PROMISE_MADE",
    "REPAYMENT_APPLIED",
    "REPAYMENT_RECEIVED",
    "REPAYMENT_REVERSED",
    "REPAYMENT_UNAPPLIED",
    "SCORECARD_UPDATED",
    "STAGE_CHANGED",
    "BorrowerUpdated",
    "BusinessDayClosed",
    "CaseAssigned",
    "CaseFlagCleared",
    "CaseFlagRaised",
    "CaseUnassigned",
    "ComplaintRecorded",
    "ContactAttempted",
    "InstalmentUpcoming",
    "LoanClosed",
    "LoanOpened",
    "PaymentMissed",
    "PromiseBroken",
    "PromiseKept",
    "PromiseMade",
    "RepaymentApplied",
    "RepaymentReceived",
    "RepaymentReversed",
    "RepaymentUnapplied",
    "ScorecardUpdated",
    "StageChanged",
]

# Inbound (core banking -> loan-events / calendar)
LOAN_OPENED: Final = "loan.opened"
BORROWER_UPDATED: Final = "borrower.updated"
INSTALMENT_UPCOMING: Final = "instalment.upcoming"
PAYMENT_MISSED: Final = "payment.missed"
REPAYMENT_RECEIVED: Final = "repayment.received"
REPAYMENT_REVERSED: Final = "repayment.reversed"
CASE_FLAG_RAISED: Final = "case.flag.raised"
CASE_FLAG_CLEARED: Final = "case.flag.cleared"
PROMISE_MADE: Final = "promise.made"
COMPLAINT_RECORDED: Final = "complaint.recorded"
LOAN_CLOSED: Final = "loan.closed"
BUSINESS_DAY_CLOSED: Final = "business_day.closed"

# Outbound (our services, through the outbox)
STAGE_CHANGED: Final = "stage.changed"
CASE_ASSIGNED: Final = "case.assigned"
CASE_UNASSIGNED: Final = "case.unassigned"
REPAYMENT_APPLIED: Final = "repayment.applied"
REPAYMENT_UNAPPLIED: Final = "repayment.unapplied"
PROMISE_KEPT: Final = "promise.kept"
PROMISE_BROKEN: Final = "promise.broken"
CONTACT_ATTEMPTED: Final = "contact.attempted"
SCORECARD_UPDATED: Final = "scorecard.updated"
