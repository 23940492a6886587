"""Special flags (bankruptcy, deceased, fraud) raised and cleared do not release a sticky stage.

PRODUCT.md 4.1: sticky stages do not roll back until arrears are fully cleared. A loan in
legal or write_off that goes to ``special`` and back is staged as if the special period had
not happened (delinquency, rule 1).
"""

import json
from decimal import Decimal

from staging_builders import age, day, flag, missed, new_loan, of_type, repay, reverse, unflag

from services.staging.domain.delinquency import select_stage, stage_before_special
from services.staging.domain.flags import Flags, raise_flag
from services.staging.domain.loan import LoanState
from services.staging.domain.policy import DEFAULT_POLICY as P
from services.staging.domain.shortcut import due_loan


def legal_with_two_instalments():
    """Legal at day 100 (DPD 100); paying instalment 1 leaves DPD 50 with arrears 500."""
    s = missed(new_loan(), 1, day(0), "500", on=day(50)).state
    s = missed(s, 2, day(50), "500", on=day(100)).state
    assert (s.stage, s.dpd) == ("legal", 100)
    return s


def test_legal_with_arrears_goes_back_to_legal_when_fraud_is_cleared():
    s = repay(legal_with_two_instalments(), "p1", "500").state
    assert (s.stage, s.dpd, s.arrears) == ("legal", 50, Decimal("500.00"))  # sticky
    s = flag(s, "fraud").state
    assert (s.stage, s.stage_before_special) == ("special", "legal")
    o = unflag(s, "fraud", on=day(101))
    assert (o.state.stage, o.state.dpd) == ("legal", 51)  # not negotiation by DPD
    assert o.state.stage_before_special is None
    (changed,) = of_type(o, "stage.changed")
    assert (changed["from_stage"], changed["to_stage"], changed["reason"]) == (
        "special", "legal", "flag")
    assert o.assignment is not None and o.assignment.team == "legal"


def test_partial_payment_while_special_keeps_the_sticky_stage_too():
    s = flag(legal_with_two_instalments(), "bankruptcy").state
    s = repay(s, "p1", "500", on=day(101)).state
    assert (s.stage, s.dpd, s.stage_before_special) == ("special", 51, "legal")
    s = unflag(s, "bankruptcy", on=day(102)).state
    assert (s.stage, s.dpd) == ("legal", 52)


def test_arrears_fully_paid_while_special_release_the_stage():
    s = flag(legal_with_two_instalments(), "fraud").state
    s = repay(s, "p1", "1000", on=day(101)).state
    assert (s.stage, s.arrears, s.stage_before_special) == ("special", 0, None)
    s = unflag(s, "fraud", on=day(102)).state
    assert (s.stage, s.dpd) == ("current", 0)


def test_a_loan_cured_while_special_then_missing_again_restarts_from_dpd():
    # Without the special period the cure would have released legal; a new missed instalment
    # then starts again from early.
    s = flag(legal_with_two_instalments(), "fraud").state
    s = repay(s, "p1", "1000", on=day(101)).state
    s = missed(s, 3, day(110), "300", on=day(115)).state
    assert (s.stage, s.stage_before_special) == ("special", None)
    s = unflag(s, "fraud").state
    assert (s.stage, s.dpd) == ("early", 5)


def test_arrears_under_tolerance_but_not_zero_still_hold_the_stage():
    s = flag(legal_with_two_instalments(), "fraud").state
    s = repay(s, "p1", "995", on=day(101)).state  # 5.00 left: DPD 0, arrears > 0
    s = unflag(s, "fraud", on=day(102)).state
    assert (s.stage, s.dpd) == ("legal", 0)


def test_write_off_with_arrears_goes_back_to_write_off():
    s = missed(new_loan(), 1, day(0), "500", on=day(150)).state
    s = missed(s, 2, day(150), "500", on=day(200)).state
    assert s.stage == "write_off"
    s = repay(s, "p1", "500").state
    assert (s.stage, s.dpd) == ("write_off", 50)
    s = flag(s, "deceased").state
    assert (s.stage, s.stage_before_special) == ("special", "write_off")
    s = unflag(s, "deceased", on=day(201)).state
    assert (s.stage, s.dpd) == ("write_off", 51)


def test_write_off_fully_paid_while_special_goes_to_current():
    s = missed(new_loan(), 1, day(0), "1000", on=day(200)).state
    s = flag(s, "fraud").state
    s = repay(s, "p1", "1000", on=day(201)).state
    s = unflag(s, "fraud", on=day(202)).state
    assert (s.stage, s.dpd) == ("current", 0)


def test_legal_crossing_into_write_off_while_special_is_raised():
    # Had special not happened the loan would have entered write_off on day 181 and stayed
    # there (sticky) after the payment brought DPD down.
    s = missed(new_loan(), 1, day(0), "500", on=day(100)).state
    s = flag(s, "fraud").state
    s = missed(s, 2, day(150), "500", on=day(190)).state
    assert s.stage_before_special == "write_off"
    s = repay(s, "p1", "500", on=day(200)).state
    assert (s.stage, s.dpd, s.stage_before_special) == ("special", 50, "write_off")
    s = unflag(s, "fraud", on=day(200)).state
    assert s.stage == "write_off"


def test_crossing_seen_by_the_event_that_follows_even_without_aging_dates():
    # No aging date is indexed while special; the payment's catch-up sees DPD 200 first.
    s = missed(new_loan(), 1, day(0), "500", on=day(100)).state
    s = missed(s, 2, day(150), "500", on=day(100)).state
    s = flag(s, "fraud").state
    assert s.next_transition_date is None
    s = repay(s, "p1", "500", on=day(200)).state
    assert (s.stage_before_special, s.dpd) == ("write_off", 50)
    assert unflag(s, "fraud").state.stage == "write_off"


def test_non_sticky_stage_before_special_is_recomputed_from_dpd():
    s = missed(new_loan(), 1, day(0), "500", on=day(40)).state
    s = missed(s, 2, day(40), "500", on=day(70)).state
    assert s.stage == "intensive"
    s = flag(s, "fraud").state
    assert s.stage_before_special is None
    s = repay(s, "p1", "500", on=day(71)).state  # DPD 31
    s = unflag(s, "fraud", on=day(72)).state
    assert (s.stage, s.dpd) == ("negotiation", 32)


def test_non_sticky_stage_reaching_legal_dpd_while_special_goes_to_legal_by_dpd():
    s = missed(new_loan(), 1, day(0), "1000", on=day(70)).state
    s = flag(s, "fraud").state
    s = unflag(s, "fraud", on=day(95)).state
    assert (s.stage, s.dpd) == ("legal", 95)


def test_still_special_while_any_special_flag_remains():
    s = repay(legal_with_two_instalments(), "p1", "500").state
    s = flag(flag(s, "fraud").state, "bankruptcy").state
    s = unflag(s, "fraud").state
    assert (s.stage, s.stage_before_special) == ("special", "legal")
    assert unflag(s, "bankruptcy").state.stage == "legal"


def test_reversal_while_special_restores_the_floor_in_the_memory():
    # A payment cures legal (floor legal), a new instalment is missed (early), fraud, the
    # payment bounces, another pays instalment 1 (DPD 6): the never-paid loan would be legal,
    # special, then legal again.
    s = missed(new_loan(), 1, day(0), "1000", on=day(95)).state
    s = repay(s, "p1", "1000", on=day(96)).state
    s = missed(s, 2, day(96), "200", on=day(100)).state
    assert s.stage == "early"
    s = flag(s, "fraud").state
    assert s.stage_before_special is None
    s = reverse(s, "p1", on=day(101)).state
    assert (s.stage, s.stage_before_special) == ("special", "legal")
    s = repay(s, "p2", "1000", on=day(102)).state
    assert (s.dpd, s.stage_before_special) == (6, "legal")
    assert unflag(s, "fraud", on=day(102)).state.stage == "legal"


def test_select_stage_uses_the_memory_only_from_special():
    fraud = raise_flag(Flags(), "fraud", day(0), None, "")
    arrears = Decimal(500)
    assert select_stage("special", 50, arrears, Flags(), P) == "negotiation"
    assert select_stage("special", 50, arrears, Flags(), P, before_special="legal") == "legal"
    assert select_stage("special", 50, Decimal(0), Flags(), P,
                        before_special="legal") == "negotiation"  # DPD of a cleared ledger
    assert select_stage("special", 50, arrears, fraud, P, before_special="legal") == "special"
    assert select_stage("early", 5, arrears, Flags(), P, before_special="legal") == "early"
    assert stage_before_special("legal", None, 50, arrears, fraud, P) == "legal"
    assert stage_before_special("intensive", None, 80, arrears, fraud, P) is None
    assert stage_before_special("special", "legal", 200, arrears, fraud, P) == "write_off"
    assert stage_before_special("special", "legal", 0, Decimal(0), fraud, P) is None
    assert stage_before_special("special", "legal", 50, arrears, Flags(), P) is None


def test_memory_round_trips_and_older_documents_load_without_it():
    s = flag(repay(legal_with_two_instalments(), "p1", "500").state, "fraud").state
    doc = json.loads(json.dumps(s.to_dict()))
    assert doc["stage_before_special"] == "legal"
    assert LoanState.from_dict(doc) == s
    older = {k: v for k, v in doc.items() if k != "stage_before_special"}
    assert LoanState.from_dict(older).stage_before_special is None
    # a loan without memory stores no key: its document is what it was before the field
    plain = legal_with_two_instalments()
    assert "stage_before_special" not in plain.to_dict()
    assert LoanState.from_dict(plain.to_dict()) == plain


def test_end_of_day_shortcut_declines_a_document_with_a_memory():
    s = missed(new_loan(rm=None), 1, day(0), "1000", on=day(5)).state
    doc = s.to_dict()
    assert due_loan(doc, s.arrears, s.oldest_unpaid_due_date).quiet
    doc["stage_before_special"] = "legal"
    assert not due_loan(doc, s.arrears, s.oldest_unpaid_due_date).quiet


def test_aging_while_special_keeps_the_memory_that_every_day_aging_gives():
    s = missed(new_loan(), 1, day(0), "1000", on=day(100)).state
    s = flag(s, "fraud").state
    daily = s
    for n in range(101, 200):
        daily = age(daily, day(n)).state
    at_once = age(s, day(199)).state
    assert daily.stage_before_special == at_once.stage_before_special == "write_off"


def early_at_day_10():
    """Early (not sticky) at DPD 10, one instalment of 500 unpaid."""
    s = missed(new_loan(), 1, day(0), "500", on=day(10)).state
    assert (s.stage, s.dpd) == ("early", 10)
    return s


def test_a_dispute_keeps_capping_the_stage_held_before_special_once_special_is_cleared():
    # Staged as if the special period had not happened: early under dispute stays early
    # (rule 4), however far DPD went meanwhile.
    s = early_at_day_10()
    s = flag(s, "dispute").state
    assert s.stage == "early"
    s = flag(s, "bankruptcy", on=day(20)).state
    assert (s.stage, s.stage_before_special) == ("special", "early")
    s = unflag(s, "bankruptcy", on=day(80)).state
    assert (s.stage, s.dpd, s.stage_before_special) == ("early", 80, None)
    # the dispute cleared: DPD decides again
    assert unflag(s, "dispute", on=day(81)).state.stage == "intensive"


def test_a_dispute_raised_while_special_caps_at_the_stage_dpd_gave_then():
    s = early_at_day_10()
    s = flag(s, "fraud", on=day(10)).state
    assert s.stage_before_special is None  # early, not sticky, no dispute
    s = flag(s, "dispute", on=day(40)).state
    assert s.stage_before_special == "negotiation"  # DPD 40 without the special period
    s = unflag(s, "fraud", on=day(90)).state
    assert (s.stage, s.dpd) == ("negotiation", 90)


def test_a_dispute_cleared_while_special_forgets_a_non_sticky_stage():
    s = early_at_day_10()
    s = flag(s, "dispute").state
    s = flag(s, "deceased", on=day(20)).state
    assert s.stage_before_special == "early"
    s = unflag(s, "dispute", on=day(30)).state
    assert s.stage_before_special is None
    assert unflag(s, "deceased", on=day(70)).state.stage == "intensive"
