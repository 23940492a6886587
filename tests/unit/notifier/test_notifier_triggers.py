from datetime import UTC, date, datetime

from services.notifier.domain.policy import DEFAULT_POLICY
from services.notifier.domain.triggers import (
    business_days_between,
    cadence_due,
    cadence_requests,
    contact_id,
    early_warning_requests,
    owner_intro_requests,
    promise_reminder_requests,
    promise_thanks_requests,
    stage_entry_requests,
)

NOW = datetime(2026, 5, 5, 2, 0, tzinfo=UTC)
BD = date(2026, 5, 4)


def _entry(stage="early", **kw):
    return stage_entry_requests(loan_id="L1", borrower_id="B1", to_stage=stage,
                                business_date=kw.pop("business_date", BD), created_at=NOW,
                                policy=DEFAULT_POLICY, **kw)


def test_stage_entry_asks_for_every_channel_of_the_stage():
    reqs = _entry("early", variables={"dpd": 1})
    assert [(r.channel, r.template, r.trigger) for r in reqs] == [
        ("sms", "early.sms", "stage_entry"), ("email", "early.email", "stage_entry")]
    assert all(r.requires_stage == "early" and r.loan_stage_now == "early" for r in reqs)
    assert reqs[0].variables == {"dpd": 1}
    assert [r.channel for r in _entry("negotiation")] == ["voice", "sms"]
    assert [r.channel for r in _entry("intensive")] == ["voice", "letter"]
    assert [r.template for r in _entry("legal")] == ["legal.letter"]


def test_no_automated_contact_on_entering_write_off_special_or_current():
    assert _entry("write_off") == []
    assert _entry("special") == []
    assert _entry("current") == []


def test_contact_ids_are_deterministic_per_cause_and_channel():
    first, again = _entry("early"), _entry("early")
    assert [r.contact_id for r in first] == [r.contact_id for r in again]
    assert first[0].contact_id != first[1].contact_id
    later = _entry("early", business_date=date(2026, 5, 5))
    assert later[0].contact_id != first[0].contact_id
    assert contact_id("L1", "cadence", "x", "sms") != contact_id("L2", "cadence", "x", "sms")


def test_business_days_between_counts_closed_dates_after_entry():
    closed = [date(2026, 5, d) for d in (1, 4, 5, 6, 6, 7)]
    assert business_days_between(date(2026, 5, 1), closed, date(2026, 5, 6)) == 3
    assert business_days_between(date(2026, 5, 1), closed, date(2026, 5, 1)) == 0


def test_cadence_is_due_on_positive_multiples():
    assert [n for n in range(0, 16) if cadence_due(n, 5)] == [5, 10, 15]
    assert not cadence_due(5, None)


def test_cadence_requests_follow_the_stage_cadence():
    def reqs(n, stage="negotiation"):
        return cadence_requests(loan_id="L1", borrower_id="B1", stage=stage,
                                business_days_in_stage=n, business_date=BD, created_at=NOW,
                                policy=DEFAULT_POLICY)
    assert reqs(2) == []
    due = reqs(3)
    assert [(r.channel, r.trigger, r.template) for r in due] == [
        ("voice", "cadence", "negotiation.voice"), ("sms", "cadence", "negotiation.sms")]
    assert reqs(10, "write_off") == []
    assert due[0].contact_id != _entry("negotiation")[0].contact_id


def test_early_warning_only_for_current_loans_and_valid_until_due_date():
    def reqs(stage):
        return early_warning_requests(loan_id="L1", borrower_id="B1", stage=stage,
                                      instalment_no=3, due_date=date(2026, 5, 8),
                                      created_at=NOW, policy=DEFAULT_POLICY)
    current = reqs("current")
    assert [r.template for r in current] == ["early_warning.sms", "early_warning.email"]
    assert current[0].valid_until == date(2026, 5, 8)
    assert current[0].requires_stage == "current"
    assert reqs("early") == []


def test_promise_reminder_the_day_before_due_on():
    def reqs(today):
        return promise_reminder_requests(loan_id="L1", borrower_id="B1", promise_id="P1",
                                         due_on=date(2026, 5, 10), today=today,
                                         stage="negotiation", created_at=NOW,
                                         policy=DEFAULT_POLICY)
    assert reqs(date(2026, 5, 8)) == [] and reqs(date(2026, 5, 10)) == []
    (reminder,) = reqs(date(2026, 5, 9))
    assert reminder.template == "promise_reminder.sms"
    assert reminder.requires_stage is None and reminder.valid_until == date(2026, 5, 10)


def test_promise_thanks_and_owner_intro():
    (thanks,) = promise_thanks_requests(loan_id="L1", borrower_id="B1", promise_id="P1",
                                        stage="negotiation", created_at=NOW,
                                        policy=DEFAULT_POLICY)
    assert thanks.template == "promise_thanks.sms" and thanks.requires_stage is None
    intro = owner_intro_requests(loan_id="L1", borrower_id="B1", collector_id="C7",
                                 stage="negotiation", business_date=BD, created_at=NOW,
                                 policy=DEFAULT_POLICY)
    assert [r.template for r in intro] == ["owner_intro.sms", "owner_intro.email"]
    assert intro[0].requires_stage == "negotiation"
    assert owner_intro_requests(loan_id="L1", borrower_id="B1", collector_id="C7",
                                stage="special", business_date=BD, created_at=NOW,
                                policy=DEFAULT_POLICY) == []


def test_contact_id_is_the_uuid5_of_the_trigger_byte_for_byte():
    import random
    import uuid

    from services.notifier.domain.triggers import CONTACT_NAMESPACE

    rng = random.Random(5)
    alphabet = "abcXYZ019-_|:.中文é "
    names = [("L1", "cadence", "early|2026-05-04", "sms"), ("", "", "", ""),
             ("贷款-7", "early_warning", "3|2026-12-01", "letter")]
    names += [tuple("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
                    for _ in range(4)) for _ in range(3000)]
    for loan, trigger, disc, channel in names:
        expected = str(uuid.uuid5(CONTACT_NAMESPACE, f"{loan}|{trigger}|{disc}|{channel}"))
        assert contact_id(loan, trigger, disc, channel) == expected


def test_every_field_of_a_request_is_the_one_its_trigger_meant():
    """The triggers build requests positionally: each field, named, is what it should be."""
    from dataclasses import asdict, fields

    from services.notifier.domain.model import ContactRequest

    variables = {"amount_due": "850.00", "instalment_no": 3}
    (req, _) = early_warning_requests(loan_id="L9", borrower_id="B9", stage="current",
                                      instalment_no=3, due_date=date(2026, 5, 8),
                                      created_at=NOW, policy=DEFAULT_POLICY,
                                      variables=variables)
    assert asdict(req) == {
        "contact_id": contact_id("L9", "early_warning", "3|2026-05-08", "sms"),
        "loan_id": "L9", "borrower_id": "B9", "channel": "sms",
        "template": "early_warning.sms", "trigger": "early_warning", "stage": "current",
        "created_at": NOW, "requires_stage": "current", "loan_stage_now": "current",
        "loan_closed": False, "valid_until": date(2026, 5, 8), "variables": variables}
    assert [f.name for f in fields(ContactRequest)] == list(asdict(req))
    (reminder,) = promise_reminder_requests(loan_id="L1", borrower_id="B1", promise_id="P1",
                                            due_on=date(2026, 5, 10), today=date(2026, 5, 9),
                                            stage="negotiation", created_at=NOW,
                                            policy=DEFAULT_POLICY)
    assert (reminder.stage, reminder.requires_stage, reminder.loan_stage_now,
            reminder.loan_closed, reminder.variables) == (
        "negotiation", None, "negotiation", False, {})
