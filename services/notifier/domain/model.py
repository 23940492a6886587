"""Plain values of the contact engine: requests, borrower profile, history, decisions.

Nothing here does I/O or reads a clock; every time is an aware datetime passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Literal

Channel = Literal["sms", "email", "voice", "letter"]
CHANNELS: tuple[str, ...] = ("sms", "email", "voice", "letter")

STAGES: tuple[str, ...] = (
    "current", "early", "negotiation", "intensive", "legal", "write_off", "special",
)

# Triggers that carry a stage's own templates (`<stage>.<channel>`).
STAGE_TRIGGERS: tuple[str, ...] = ("stage_entry", "cadence")
# Triggers with their own templates (`<trigger>.<channel>`).
EVENT_TRIGGERS: tuple[str, ...] = (
    "early_warning", "promise_reminder", "promise_thanks", "owner_intro",
)
TRIGGERS: tuple[str, ...] = STAGE_TRIGGERS + EVENT_TRIGGERS

FLAGS: tuple[str, ...] = (
    "dispute", "hardship", "cease_contact", "bankruptcy", "deceased", "fraud", "wilful_default",
)
# PRODUCT.md 4.2: a loan with any of these is never contacted; policy may add, never remove.
MANDATORY_BLOCKING_FLAGS: tuple[str, ...] = (
    "cease_contact", "dispute", "bankruptcy", "deceased", "fraud",
)

LANGUAGES: tuple[str, ...] = ("zh-CN", "en")

# Statuses of the contact log (contact.attempted).
ContactStatus = Literal["sent", "delivered", "failed", "deferred", "suppressed"]


@dataclass(frozen=True, slots=True)
class ContactRequest:
    """A wish to contact a borrower, made by a trigger; `decide` says whether and when.

    `template` is the template key without language and variant (`early.sms`);
    `requires_stage` is the stage the request was made for (None: any stage will do);
    `valid_until` is the last local date (borrower's zone) on which the contact still makes
    sense (a promise reminder after the due date is noise). `loan_stage_now` and `loan_closed`
    describe the loan when the request is decided, refreshed with `with_loan_state` on release.
    """

    contact_id: str
    loan_id: str
    borrower_id: str
    channel: str
    template: str
    trigger: str
    stage: str
    created_at: datetime
    requires_stage: str | None
    loan_stage_now: str
    loan_closed: bool = False
    valid_until: date | None = None
    variables: Mapping[str, object] = field(default_factory=dict)

    def with_loan_state(self, stage: str, closed: bool) -> ContactRequest:
        return replace(self, loan_stage_now=stage, loan_closed=closed)


@dataclass(frozen=True, slots=True)
class BorrowerProfile:
    borrower_id: str
    timezone: str
    language: str = "zh-CN"
    opted_out_channels: frozenset[str] = frozenset()
    vulnerable: bool = False
    has_phone: bool = True
    has_email: bool = True
    has_address: bool = True

    def reachable_by(self, channel: str) -> bool:
        if channel in ("sms", "voice"):
            return self.has_phone
        if channel == "email":
            return self.has_email
        return self.has_address


@dataclass(frozen=True, slots=True)
class ContactRecord:
    """One earlier contact of the loan, as the contact log knows it."""

    channel: str
    sent_at: datetime
    status: str


@dataclass(frozen=True, slots=True)
class Send:
    contact_id: str
    channel: str
    template_id: str
    language: str
    vulnerable: bool
    kind: Literal["send"] = "send"


@dataclass(frozen=True, slots=True)
class Defer:
    """Not now; decide again at `until` (UTC, on a whole minute)."""

    contact_id: str
    until: datetime
    reason: Literal["quiet_hours", "frequency_cap"]
    constraints: tuple[str, ...] = ()
    kind: Literal["defer"] = "defer"


@dataclass(frozen=True, slots=True)
class Suppress:
    contact_id: str
    reason: str
    detail: str = ""
    kind: Literal["suppress"] = "suppress"


Decision = Send | Defer | Suppress
