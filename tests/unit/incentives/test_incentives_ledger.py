from dataclasses import FrozenInstanceError
from datetime import date
from decimal import Decimal

import pytest
from incentive_events import (
    applied,
    assigned,
    complaint,
    promise,
    stage_changed,
    unapplied,
    unassigned,
)

from services.incentives.domain import (
    EntryKind,
    MalformedEvent,
    assignment_from_assigned,
    business_days_between,
    clawback_for_unapplied,
    credit_for_applied,
    cure_for_stage_changed,
    cure_reversal_for_stage_changed,
    end_assignment,
    entries_for_assigned,
    entry_for_complaint,
    entry_for_promise,
    known_arrears,
)

MARCH_3 = date(2025, 3, 3)  # a Monday


def test_credit_is_to_arrears_never_excess_in_the_value_date_month():
    [entry] = credit_for_applied(applied("120.50", date(2025, 3, 31), excess="79.50"))
    assert entry.kind is EntryKind.CREDIT
    assert entry.amount == Decimal("120.50")
    assert entry.period == "2025-03"
    assert entry.collector_id == "c1"
    assert entry.stage == "early"
    assert entry.on == date(2025, 3, 31)


def test_no_collector_or_nothing_to_arrears_no_credit():
    assert credit_for_applied(applied("100.00", MARCH_3, collector_id=None)) == []
    assert credit_for_applied(applied("0.00", MARCH_3, excess="50.00")) == []


def test_entry_id_is_deterministic_per_event_and_immutable():
    event = applied("10.00", MARCH_3, event_id="evt-fixed")
    [first], [again] = credit_for_applied(event), credit_for_applied(dict(event))
    assert first == again
    other = credit_for_applied(applied("10.00", MARCH_3))[0]
    assert other.entry_id != first.entry_id
    with pytest.raises(FrozenInstanceError):
        first.amount = Decimal(0)  # type: ignore[misc]


def test_credit_and_clawback_of_one_event_id_do_not_collide():
    event = applied("10.00", MARCH_3, event_id="same")
    credit = credit_for_applied(event)[0]
    back = clawback_for_unapplied(unapplied(event, event_id="same"), set(), "2025-03")[0]
    assert credit.entry_id != back.entry_id


@pytest.mark.parametrize(
    ("to_arrears", "field"),
    [("-1.00", "data.to_arrears"), ("abc", "data.to_arrears"), (None, "data.to_arrears")],
)
def test_malformed_amounts_are_refused(to_arrears, field):
    event = applied("1.00", MARCH_3)
    event["data"]["to_arrears"] = to_arrears
    with pytest.raises(MalformedEvent) as info:
        credit_for_applied(event)
    assert info.value.field == field


def test_float_money_is_refused():
    event = applied("1.00", MARCH_3)
    event["data"]["to_arrears"] = 1.0
    with pytest.raises(MalformedEvent):
        credit_for_applied(event)


def test_clawback_in_original_month_when_open():
    original = applied("300.00", date(2025, 2, 27), stage="legal")
    [back] = clawback_for_unapplied(unapplied(original), set(), "2025-03")
    assert back.kind is EntryKind.CLAWBACK
    assert back.amount == Decimal("-300.00")
    assert back.period == "2025-02"
    assert back.on == date(2025, 2, 27)
    assert back.stage == "legal"


def test_clawback_in_arrival_month_when_original_closed():
    original = applied("300.00", date(2025, 2, 27))
    [back] = clawback_for_unapplied(unapplied(original), {"2025-01", "2025-02"}, "2025-03")
    assert back.period == "2025-03"
    assert back.on == date(2025, 2, 27)  # still reversed at February's rate


def test_clawback_without_collector_is_nothing_and_arrival_period_is_checked():
    original = applied("300.00", date(2025, 2, 27), collector_id=None)
    assert clawback_for_unapplied(unapplied(original), {"2025-02"}, "2025-03") == []
    with pytest.raises(ValueError):
        clawback_for_unapplied(unapplied(applied("1.00", MARCH_3)), {"2025-03"}, "March")


def test_assignment_lifecycle():
    a = assignment_from_assigned(assigned("c1", MARCH_3))
    assert a.active and a.covers(MARCH_3) and not a.covers(date(2025, 3, 2))
    # a late unassignment of somebody else changes nothing
    assert end_assignment(a, unassigned("c9", date(2025, 3, 5))) is a
    ended = end_assignment(a, unassigned("c1", date(2025, 3, 5)))
    assert ended is not None and not ended.active
    assert ended.covers(date(2025, 3, 5)) and not ended.covers(date(2025, 3, 6))
    assert end_assignment(None, unassigned("c1", MARCH_3)) is None


def test_case_assigned_counts_known_arrears():
    arrears, currency = known_arrears(
        stage_changed("early", "negotiation", MARCH_3, reason="aging", arrears="812.40")
    )
    [entry] = entries_for_assigned(assigned("c2", MARCH_3, previous="c1"), arrears, currency)
    assert entry.kind is EntryKind.CASE_ASSIGNED
    assert (entry.collector_id, entry.amount, entry.currency) == ("c2", Decimal("812.40"), "CNY")
    assert entry.team == "negotiation"
    [unknown] = entries_for_assigned(assigned("c3", MARCH_3), None, None)
    assert unknown.amount == 0
    assert entries_for_assigned(assigned("c2", MARCH_3, previous="c2"), arrears, currency) == []


def test_cure_while_assigned_counts_business_days():
    a = assignment_from_assigned(assigned("c1", date(2025, 2, 28)))  # a Friday
    [cure] = cure_for_stage_changed(stage_changed("negotiation", "current", MARCH_3), a)
    assert cure.kind is EntryKind.CURE
    assert cure.collector_id == "c1"
    assert cure.days_to_cure == 1
    assert cure.period == "2025-03"
    assert cure.stage == "negotiation"


def test_cure_on_the_unassignment_day_still_counts():
    a = assignment_from_assigned(assigned("c1", date(2025, 2, 24)))
    ended = end_assignment(a, unassigned("c1", MARCH_3))
    assert len(cure_for_stage_changed(stage_changed("early", "current", MARCH_3), ended)) == 1
    later = date(2025, 3, 4)
    assert cure_for_stage_changed(stage_changed("early", "current", later), ended) == []


@pytest.mark.parametrize(
    ("from_stage", "to_stage", "reason"),
    [
        ("early", "negotiation", "aging"),
        ("current", "current", "repayment"),
        ("legal", "current", "closed"),
    ],
)
def test_not_a_cure(from_stage, to_stage, reason):
    a = assignment_from_assigned(assigned("c1", date(2025, 2, 24)))
    event = stage_changed(from_stage, to_stage, MARCH_3, reason=reason)
    assert cure_for_stage_changed(event, a) == []


def test_no_cure_without_an_owner_or_for_another_loan():
    event = stage_changed("early", "current", MARCH_3)
    assert cure_for_stage_changed(event, None) == []
    other = assignment_from_assigned(assigned("c1", date(2025, 2, 24), loan_id="L2"))
    assert cure_for_stage_changed(event, other) == []


def test_cure_reversal_undoes_the_last_cure():
    a = assignment_from_assigned(assigned("c1", date(2025, 2, 24)))
    [cure] = cure_for_stage_changed(stage_changed("early", "current", date(2025, 2, 28)), a)
    back_event = stage_changed("current", "early", MARCH_3, reason="reversal")
    [back] = cure_reversal_for_stage_changed(back_event, cure, set(), "2025-03")
    assert back.kind is EntryKind.CURE_REVERSED
    assert (back.collector_id, back.period, back.days_to_cure) == ("c1", "2025-02", 4)
    [late] = cure_reversal_for_stage_changed(back_event, cure, {"2025-02"}, "2025-03")
    assert late.period == "2025-03"
    aging = stage_changed("current", "early", MARCH_3, reason="aging")
    assert cure_reversal_for_stage_changed(aging, cure, set(), "2025-03") == []
    assert cure_reversal_for_stage_changed(back_event, None, set(), "2025-03") == []


def test_promises_count_in_the_due_month():
    due = date(2025, 4, 2)
    kinds = {
        t: entry_for_promise(promise(t, due))[0]
        for t in ("promise.made", "promise.kept", "promise.broken")
    }
    assert kinds["promise.made"].kind is EntryKind.PROMISE_MADE
    assert kinds["promise.kept"].kind is EntryKind.PROMISE_KEPT
    assert kinds["promise.broken"].kind is EntryKind.PROMISE_BROKEN
    assert {e.period for e in kinds.values()} == {"2025-04"}
    with pytest.raises(MalformedEvent):
        entry_for_promise({**promise("promise.made", due), "type": "promise.forgotten"})


def test_complaint_named_collector_or_current_assignee():
    a = assignment_from_assigned(assigned("c7", date(2025, 2, 24)))
    [named] = entry_for_complaint(complaint("major", collector_id="c1"), a, "2025-03")
    assert (named.collector_id, named.severity, named.period) == ("c1", "major", "2025-03")
    [owner] = entry_for_complaint(complaint("minor", collector_id=None), a, "2025-03")
    assert owner.collector_id == "c7"
    ended = end_assignment(a, unassigned("c7", MARCH_3))
    assert entry_for_complaint(complaint("minor", collector_id=None), ended, "2025-03") == []
    assert entry_for_complaint(complaint("minor", collector_id=None), None, "2025-03") == []
    with pytest.raises(MalformedEvent):
        entry_for_complaint(complaint("awful"), a, "2025-03")


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (date(2025, 2, 28), date(2025, 3, 3), 1),  # Fri -> Mon
        (date(2025, 3, 3), date(2025, 3, 3), 0),
        (date(2025, 3, 3), date(2025, 3, 1), 0),
        (date(2025, 3, 3), date(2025, 3, 10), 5),
        (date(2025, 3, 1), date(2025, 3, 2), 0),  # Sat -> Sun
        (date(2025, 3, 1), date(2025, 3, 31), 21),
    ],
)
def test_business_days_between(start, end, expected):
    assert business_days_between(start, end) == expected


def test_business_days_skip_holidays_on_weekdays_only():
    holidays = frozenset({date(2025, 3, 5), date(2025, 3, 8), date(2025, 4, 1)})
    assert business_days_between(date(2025, 3, 3), date(2025, 3, 10), holidays) == 4
