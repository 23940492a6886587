"""Domain facts turned into contact requests, one per channel of the policy.

Contact ids are uuid5 of what caused the contact (loan, trigger, discriminator, channel),
so a redelivered event yields the same id and the provider's idempotency key holds.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta

from .model import ContactRequest
from .policy import ContactPolicy

CONTACT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:qingshou:notifier:contact")
# the hash of the namespace prefix, copied per id (UUIDv5 is SHA-1 by definition, not security)
_NAMESPACE_SHA1 = hashlib.sha1(CONTACT_NAMESPACE.bytes, usedforsecurity=False)
# the RFC 4122 variant bits over the top two bits of the hash's 17th hex digit
_VARIANT_DIGIT = {c: "89ab"[int(c, 16) & 0x3] for c in "0123456789abcdef"}


def contact_id(loan_id: str, trigger: str, discriminator: str, channel: str) -> str:
    """``str(uuid.uuid5(CONTACT_NAMESPACE, "loan|trigger|discriminator|channel"))``, formatted
    straight from the SHA-1 digest (a UUID object per contact cost more than the hash):
    version digit 5, variant bits 10, the rest of the first 128 bits of the hash as is."""
    name = f"{loan_id}|{trigger}|{discriminator}|{channel}"
    digest = _NAMESPACE_SHA1.copy()
    digest.update(name.encode())
    h = digest.hexdigest()
    return (f"{h[:8]}-{h[8:12]}-5{h[13:16]}-"
            f"{_VARIANT_DIGIT[h[16]]}{h[17:20]}-{h[20:32]}")


def _requests(
    *,
    loan_id: str,
    borrower_id: str,
    trigger: str,
    template_key: str,
    discriminator: str,
    channels: Iterable[str],
    stage: str,
    requires_stage: str | None,
    created_at: datetime,
    valid_until: date | None = None,
    variables: Mapping[str, object] | None = None,
) -> list[ContactRequest]:
    # one copy for the trigger's requests: a request never changes its variables
    own_variables = dict(variables or {})
    # positional, in the order of the fields (keywords cost a third of the construction);
    # test_notifier_triggers checks every field of what this builds
    return [
        ContactRequest(
            contact_id(loan_id, trigger, discriminator, channel),  # contact_id
            loan_id,  # loan_id
            borrower_id,  # borrower_id
            channel,  # channel
            f"{template_key}.{channel}",  # template
            trigger,  # trigger
            stage,  # stage
            created_at,  # created_at
            requires_stage,  # requires_stage
            stage,  # loan_stage_now
            False,  # loan_closed
            valid_until,  # valid_until
            own_variables,  # variables
        )
        for channel in channels
    ]


def business_days_between(entered_on: date, closed_dates: Iterable[date], today: date) -> int:
    """Closed business dates after `entered_on` up to and including `today`."""
    return sum(1 for d in set(closed_dates) if entered_on < d <= today)


def cadence_due(business_days_in_stage: int, every: int | None) -> bool:
    """Due when the days spent in the stage are a positive multiple of the cadence."""
    return every is not None and business_days_in_stage > 0 and business_days_in_stage % every == 0


def stage_entry_requests(
    *, loan_id: str, borrower_id: str, to_stage: str, business_date: date, created_at: datetime,
    policy: ContactPolicy, variables: Mapping[str, object] | None = None,
) -> list[ContactRequest]:
    """On `stage.changed`: the stage's channels, each with the stage's template."""
    plan = policy.stages.get(to_stage)
    if plan is None or not plan.automated:
        return []
    return _requests(
        loan_id=loan_id, borrower_id=borrower_id, trigger="stage_entry", template_key=to_stage,
        discriminator=f"{to_stage}|{business_date.isoformat()}", channels=plan.channels,
        stage=to_stage, requires_stage=to_stage, created_at=created_at, variables=variables,
    )


def cadence_requests(
    *, loan_id: str, borrower_id: str, stage: str, business_days_in_stage: int,
    business_date: date, created_at: datetime, policy: ContactPolicy,
    variables: Mapping[str, object] | None = None,
) -> list[ContactRequest]:
    """On `business_day.closed`: the stage's channels again when the cadence is due."""
    plan = policy.stages.get(stage)
    if plan is None or not plan.automated:
        return []
    if not cadence_due(business_days_in_stage, plan.cadence_business_days):
        return []
    return _requests(
        loan_id=loan_id, borrower_id=borrower_id, trigger="cadence", template_key=stage,
        discriminator=f"{stage}|{business_date.isoformat()}", channels=plan.channels,
        stage=stage, requires_stage=stage, created_at=created_at, variables=variables,
    )


def early_warning_requests(
    *, loan_id: str, borrower_id: str, stage: str, instalment_no: int, due_date: date,
    created_at: datetime, policy: ContactPolicy, variables: Mapping[str, object] | None = None,
) -> list[ContactRequest]:
    """On `instalment.upcoming`: a pre-due warning, only in the stages the policy names."""
    plan = policy.triggers["early_warning"]
    if plan.stages is not None and stage not in plan.stages:
        return []
    return _requests(
        loan_id=loan_id, borrower_id=borrower_id, trigger="early_warning",
        template_key="early_warning", discriminator=f"{instalment_no}|{due_date.isoformat()}",
        channels=plan.channels, stage=stage, requires_stage=stage, created_at=created_at,
        valid_until=due_date, variables=variables,
    )


def promise_reminder_date(due_on: date, policy: ContactPolicy) -> date:
    days_before = policy.triggers["promise_reminder"].days_before or 1
    return due_on - timedelta(days=days_before)


def promise_reminder_requests(
    *, loan_id: str, borrower_id: str, promise_id: str, due_on: date, today: date, stage: str,
    created_at: datetime, policy: ContactPolicy, variables: Mapping[str, object] | None = None,
) -> list[ContactRequest]:
    """The day before `due_on` (calendar days, per policy): remind of the promise.

    Any stage will do (a promise outlives a stage change); it is useless after `due_on`.
    """
    if today != promise_reminder_date(due_on, policy):
        return []
    return _requests(
        loan_id=loan_id, borrower_id=borrower_id, trigger="promise_reminder",
        template_key="promise_reminder", discriminator=f"{promise_id}|{due_on.isoformat()}",
        channels=policy.triggers["promise_reminder"].channels, stage=stage, requires_stage=None,
        created_at=created_at, valid_until=due_on, variables=variables,
    )


def promise_thanks_requests(
    *, loan_id: str, borrower_id: str, promise_id: str, stage: str, created_at: datetime,
    policy: ContactPolicy, variables: Mapping[str, object] | None = None,
) -> list[ContactRequest]:
    """On `promise.kept`: thank the borrower, whatever the stage."""
    return _requests(
        loan_id=loan_id, borrower_id=borrower_id, trigger="promise_thanks",
        template_key="promise_thanks", discriminator=promise_id,
        channels=policy.triggers["promise_thanks"].channels, stage=stage, requires_stage=None,
        created_at=created_at, variables=variables,
    )


def owner_intro_requests(
    *, loan_id: str, borrower_id: str, collector_id: str, stage: str, business_date: date,
    created_at: datetime, policy: ContactPolicy, variables: Mapping[str, object] | None = None,
) -> list[ContactRequest]:
    """On `case.assigned`: the new owner introduces themselves; stale once the stage moves on."""
    plan = policy.stages.get(stage)
    if plan is None or not plan.automated:
        return []
    return _requests(
        loan_id=loan_id, borrower_id=borrower_id, trigger="owner_intro",
        template_key="owner_intro",
        discriminator=f"{collector_id}|{stage}|{business_date.isoformat()}",
        channels=policy.triggers["owner_intro"].channels, stage=stage, requires_stage=stage,
        created_at=created_at, variables=variables,
    )
