import pytest
from staging_builders import age, day, missed, new_loan, of_type, promise, repay, reverse, types

from services.staging.domain.errors import Rejected


def loan_with_arrears():
    return missed(new_loan(), 1, day(0), "1000", on=day(40)).state


def test_promise_kept_at_once_when_paid_in_full():
    s = promise(loan_with_arrears(), "pr1", "300", due_on=day(45)).state
    assert s.next_transition_date == day(47)  # due_on + 1 grace day + 1
    s = repay(s, "p1", "100", on=day(41)).state
    assert s.open_promises[0].paid == 100
    o = repay(s, "p2", "250", on=day(42))
    (kept,) = of_type(o, "promise.kept")
    assert kept == {"loan_id": "L1", "promise_id": "pr1", "collector_id": "c-1",
                    "amount": "300", "paid": "300", "currency": "CNY",
                    "due_on": day(45).isoformat(), "business_date": day(42).isoformat()}
    assert o.state.open_promises == ()


def test_promise_broken_after_due_on_plus_grace():
    s = promise(loan_with_arrears(), "pr1", "300", due_on=day(45)).state
    s = repay(s, "p1", "100", on=day(41)).state
    assert age(s, day(46)).events == ()  # the grace day
    o = age(s, day(47))
    (broken,) = of_type(o, "promise.broken")
    assert broken["paid"] == "100" and broken["business_date"] == day(47).isoformat()


def test_late_arriving_payment_value_dated_on_time_counts_during_grace():
    s = promise(loan_with_arrears(), "pr1", "300", due_on=day(45)).state
    o = repay(s, "p1", "300", on=day(46), value_date=day(45))
    assert "promise.kept" in types(o)
    o = repay(s, "p1", "300", on=day(46), value_date=day(46))
    assert "promise.kept" not in types(o)


def test_payments_count_toward_promises_oldest_first():
    s = loan_with_arrears()
    s = promise(s, "pr1", "100", due_on=day(50)).state
    s = promise(s, "pr2", "100", due_on=day(50)).state
    o = repay(s, "p1", "150", on=day(41))
    assert [k["promise_id"] for k in of_type(o, "promise.kept")] == ["pr1"]
    assert o.state.open_promises[0].paid == 50


def test_payment_before_the_promise_does_not_count():
    s = repay(loan_with_arrears(), "p1", "300").state
    s = promise(s, "pr1", "300", due_on=day(45)).state
    assert s.open_promises[0].paid == 0


def test_reversal_uncounts_the_payment():
    s = promise(loan_with_arrears(), "pr1", "300", due_on=day(45)).state
    s = repay(s, "p1", "300", on=day(41)).state
    assert s.promises[0].status == "kept"
    reopened = reverse(s, "p1", on=day(43)).state
    assert reopened.promises[0].status == "open" and reopened.promises[0].paid == 0
    o = reverse(s, "p1", on=day(50))  # after the deadline: now broken, superseding kept
    assert of_type(o, "promise.broken")[0]["paid"] == "0"


def test_promise_validation():
    s = promise(loan_with_arrears(), "pr1", "300", due_on=day(45)).state
    with pytest.raises(Rejected, match="duplicate_promise"):
        promise(s, "pr1", "300", due_on=day(45))
    with pytest.raises(Rejected, match="invalid_due_on"):
        promise(s, "pr2", "300", due_on=day(39))
