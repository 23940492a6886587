"""Closed vocabularies of the event contract (PRODUCT.md 3.2, 3.3, 4.1, 4.2).

StrEnum members compare equal to their wire strings, so services can use either.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ComplaintSeverity",
    "ContactChannel",
    "ContactStatus",
    "Flag",
    "Language",
    "LoanCloseReason",
    "Product",
    "RepaymentChannel",
    "Stage",
    "StageChangeReason",
]


class Product(StrEnum):
    CREDIT_CARD = "credit_card"
    CONSUMER_LOAN = "consumer_loan"
    MORTGAGE = "mortgage"
    HOUSING_FUND_LOAN = "housing_fund_loan"
    BUSINESS_LOAN = "business_loan"


class Language(StrEnum):
    ZH_CN = "zh-CN"
    EN = "en"


class ContactChannel(StrEnum):
    SMS = "sms"
    EMAIL = "email"
    VOICE = "voice"
    LETTER = "letter"


class RepaymentChannel(StrEnum):
    TRANSFER = "transfer"
    CARD = "card"
    CASH = "cash"
    AUTO_DEBIT = "auto_debit"
    AGENCY = "agency"
    OTHER = "other"


class Flag(StrEnum):
    DISPUTE = "dispute"
    HARDSHIP = "hardship"
    CEASE_CONTACT = "cease_contact"
    BANKRUPTCY = "bankruptcy"
    DECEASED = "deceased"
    FRAUD = "fraud"
    WILFUL_DEFAULT = "wilful_default"


class ComplaintSeverity(StrEnum):
    MINOR = "minor"
    MAJOR = "major"


class LoanCloseReason(StrEnum):
    REPAID = "repaid"
    WRITTEN_OFF = "written_off"
    SOLD = "sold"
    RESTRUCTURED = "restructured"


class Stage(StrEnum):
    CURRENT = "current"
    EARLY = "early"
    NEGOTIATION = "negotiation"
    INTENSIVE = "intensive"
    LEGAL = "legal"
    WRITE_OFF = "write_off"
    SPECIAL = "special"


class StageChangeReason(StrEnum):
    AGING = "aging"
    MISSED_PAYMENT = "missed_payment"
    REPAYMENT = "repayment"
    REVERSAL = "reversal"
    FLAG = "flag"
    CLOSED = "closed"


class ContactStatus(StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    DEFERRED = "deferred"
    SUPPRESSED = "suppressed"
