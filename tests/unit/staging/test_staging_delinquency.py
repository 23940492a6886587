from datetime import date
from decimal import Decimal

from staging_builders import age, day, flag, missed, new_loan, repay, types, unflag

from services.staging.domain.delinquency import days_past_due, select_stage
from services.staging.domain.flags import Flags, clear_flag, expire_flags, raise_flag
from services.staging.domain.ledger import Ledger, record_missed_payment
from services.staging.domain.policy import DEFAULT_POLICY as P

TOL = Decimal("10.00")


def ledger(amount="100", due=date(2026, 1, 1)):
    return record_missed_payment(Ledger("CNY"), 1, due, Decimal(amount)).ledger


def test_dpd_counts_days_since_oldest_unpaid_due_date():
    assert days_past_due(ledger(), Flags(), TOL, date(2026, 1, 1)) == 0
    assert days_past_due(ledger(), Flags(), TOL, date(2026, 1, 31)) == 30
    assert days_past_due(Ledger("CNY"), Flags(), TOL, date(2026, 1, 31)) == 0


def test_dpd_is_zero_at_or_below_tolerance():
    assert days_past_due(ledger("10.00"), Flags(), TOL, date(2026, 3, 1)) == 0
    assert days_past_due(ledger("10.01"), Flags(), TOL, date(2026, 3, 1)) == 59


def test_hardship_pauses_the_clock_between_raise_and_clear():
    flags = raise_flag(Flags(), "hardship", date(2026, 1, 11), None, "")
    assert days_past_due(ledger(), flags, TOL, date(2026, 2, 20)) == 10
    flags = clear_flag(flags, "hardship", date(2026, 2, 1))
    assert flags.pauses == ((date(2026, 1, 11), date(2026, 2, 1)),)
    # resumes from 10 the day after clearing
    assert days_past_due(ledger(), flags, TOL, date(2026, 2, 2)) == 11


def test_hardship_until_is_inclusive_then_expires():
    flags = raise_flag(Flags(), "hardship", date(2026, 1, 11), date(2026, 1, 20), "")
    assert days_past_due(ledger(), flags, TOL, date(2026, 1, 20)) == 10
    assert days_past_due(ledger(), flags, TOL, date(2026, 1, 25)) == 15
    expired = expire_flags(flags, date(2026, 1, 21))
    assert not expired.has("hardship") and expired.pauses == ((date(2026, 1, 11),
                                                                date(2026, 1, 20)),)
    assert expire_flags(flags, date(2026, 1, 20)) == flags


def test_select_stage_basic_and_flags():
    special = raise_flag(Flags(), "fraud", day(0), None, "")
    wilful = raise_flag(Flags(), "wilful_default", day(0), None, "")
    dispute = raise_flag(Flags(), "dispute", day(0), None, "")
    assert select_stage("current", 45, Decimal(1), Flags(), P) == "negotiation"
    assert select_stage("current", 0, Decimal(0), special, P) == "special"
    assert select_stage("early", 3, Decimal(100), wilful, P) == "legal"
    assert select_stage("write_off", 200, Decimal(100), wilful, P) == "write_off"
    assert select_stage("early", 70, Decimal(100), dispute, P) == "early"
    assert select_stage("intensive", 5, Decimal(100), dispute, P) == "early"
    both = raise_flag(dispute, "wilful_default", day(0), None, "")
    assert select_stage("early", 5, Decimal(100), both, P) == "legal"


def test_sticky_stage_holds_until_arrears_are_zero_not_just_tolerance():
    assert select_stage("legal", 20, Decimal(500), Flags(), P) == "legal"
    assert select_stage("legal", 0, Decimal(5), Flags(), P) == "legal"
    assert select_stage("legal", 0, Decimal(0), Flags(), P) == "current"
    assert select_stage("legal", 200, Decimal(5), Flags(), P) == "write_off"
    assert select_stage("intensive", 20, Decimal(500), Flags(), P) == "early"


def test_loan_ages_through_stages_with_assignment_requests():
    s = missed(new_loan(), 1, day(0), "1000", on=day(1)).state
    assert (s.stage, s.dpd, s.next_transition_date) == ("early", 1, day(31))
    assert age(s, day(30)).state.stage == "early"
    o = age(s, day(31))
    assert o.state.stage == "negotiation" and o.assignment.relationship_manager_id == "rm-1"
    assert age(s, day(61)).assignment.team == "intensive"
    o = age(s, day(95))
    assert (o.state.stage, o.state.dpd, o.state.next_transition_date) == ("legal", 95, day(181))
    assert o.state.history[-1].reason == "aging"


def test_wilful_default_goes_to_legal_at_once_and_sticks_after_clearing():
    s = missed(new_loan(), 1, day(0), "1000", on=day(5)).state
    o = flag(s, "wilful_default")
    assert o.state.stage == "legal" and o.state.history[-1].reason == "flag"
    assert o.assignment.team == "legal"
    assert unflag(o.state, "wilful_default", on=day(6)).state.stage == "legal"


def test_special_flag_then_recompute_when_cleared():
    s = missed(new_loan(), 1, day(0), "1000", on=day(40)).state
    s = flag(s, "bankruptcy").state
    assert s.stage == "special" and s.next_transition_date is None
    s = age(s, day(70)).state
    assert s.stage == "special"
    s = unflag(s, "bankruptcy").state
    assert s.stage == "intensive" and s.dpd == 70


def test_dispute_pauses_escalation_until_expiry():
    s = missed(new_loan(), 1, day(0), "1000", on=day(10)).state
    s = flag(s, "dispute", until=day(50)).state
    assert s.next_transition_date == day(51)
    assert age(s, day(50)).state.stage == "early"
    o = age(s, day(51))
    assert o.state.stage == "negotiation" and not o.state.flags.has("dispute")


def test_hardship_flag_on_a_loan_freezes_dpd_and_stage():
    s = missed(new_loan(), 1, day(0), "1000", on=day(25)).state
    s = flag(s, "hardship").state
    assert s.next_transition_date is None
    s = age(s, day(100)).state
    assert (s.stage, s.dpd) == ("early", 25)
    s = unflag(s, "hardship").state
    assert s.dpd == 25 and s.next_transition_date == day(106)


def test_repayment_cures_legal_only_when_arrears_fully_cleared():
    s = missed(new_loan(), 1, day(0), "1000", on=day(100)).state
    assert s.stage == "legal"
    s1 = repay(s, "p1", "995").state
    assert (s1.stage, s1.dpd) == ("legal", 0)
    o = repay(s1, "p2", "5")
    assert o.state.stage == "current" and "stage.changed" in types(o)
