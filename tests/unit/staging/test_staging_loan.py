import json

import pytest
from staging_builders import (
    age,
    assign,
    day,
    flag,
    missed,
    new_loan,
    of_type,
    promise,
    repay,
    reverse,
    types,
)

from services.staging.domain.errors import Rejected
from services.staging.domain.handlers import HANDLERS, apply_loan_closed, request_reassignment
from services.staging.domain.loan import LoanState
from services.staging.domain.policy import DEFAULT_POLICY as P


def legal_loan():
    s = missed(new_loan(), 1, day(0), "1000", on=day(95)).state
    return assign(s, "c-legal", "legal").state


def test_repayment_applied_event_matches_the_contract():
    s = legal_loan()
    o = repay(s, "p1", "1200.00", on=day(96), value_date=day(95))
    (applied,) = of_type(o, "repayment.applied")
    assert applied == {
        "loan_id": "L1", "payment_id": "p1", "amount": "1200.00", "to_arrears": "1000",
        "excess": "200.00", "currency": "CNY", "value_date": day(95).isoformat(),
        "stage": "current", "dpd_before": 96, "dpd_after": 0, "collector_id": "c-legal",
        "reason": "received", "instalments": [{"instalment_no": 1, "amount": "1000"}],
    }
    assert types(o) == ["repayment.applied", "stage.changed", "case.unassigned"]
    (unassigned,) = of_type(o, "case.unassigned")
    assert unassigned["collector_id"] == "c-legal" and unassigned["stage"] == "current"
    assert o.state.owner.collector_id is None and o.assignment is None


def test_collector_on_value_date_comes_from_owner_history():
    s = missed(new_loan(), 1, day(0), "1000", on=day(65)).state
    s = assign(s, "c-a", "intensive").state
    s = assign(age(s, day(70)).state, "c-b", "intensive").state
    assert s.owner_on(day(64)) is None and s.owner_on(day(66)) == "c-a"
    assert s.owner_on(day(70)) == "c-b"
    o = repay(s, "p1", "10", on=day(71), value_date=day(68))
    assert of_type(o, "repayment.applied")[0]["collector_id"] == "c-a"


def test_reversal_restores_stage_owner_request_and_reports_allocations():
    s = legal_loan()
    cured = repay(s, "p1", "1000", on=day(96)).state
    cured = repay(cured, "p2", "50", on=day(97)).state
    assert cured.stage == "current"
    o = reverse(cured, "p1", on=day(98))
    assert o.state.stage == "legal"
    assert o.state.arrears == 950 and o.state.dpd == 98
    unapplied, realloc_out, realloc_in = (e for e in o.events if e.type.startswith("repayment"))
    assert unapplied.type == "repayment.unapplied"
    assert unapplied.data["to_arrears"] == "1000" and unapplied.data["reason"] == "reversed"
    assert realloc_out.type == "repayment.unapplied" and realloc_out.data["excess"] == "50"
    assert realloc_in.type == "repayment.applied" and realloc_in.data["to_arrears"] == "50"
    assert o.state.history[-1].reason == "reversal"
    assert o.assignment.team == "legal"


def test_reversal_during_dispute_restores_the_stage_the_payment_found():
    s = missed(new_loan(), 1, day(0), "1000", on=day(70)).state
    s = repay(s, "p1", "1000").state
    s = flag(s, "dispute", on=day(71)).state
    o = reverse(s, "p1", on=day(72))
    assert o.state.stage == "intensive"  # as if never paid: disputed while intensive


def test_reversal_of_an_excess_payment_changes_only_the_ledger_history():
    s = missed(new_loan(), 1, day(0), "100", on=day(5)).state
    s = repay(s, "p1", "100").state
    s2 = repay(s, "p2", "30").state
    o = reverse(s2, "p2")
    assert o.state.ledger.entries == s.ledger.entries and o.state.stage == s.stage
    assert types(o) == ["repayment.unapplied"]


def test_rejections_leave_the_state_untouched():
    s = legal_loan()
    before = s.to_dict()
    for call in (
        lambda: repay(s, "p1", "10", currency="USD"),
        lambda: repay(s, "p1", "-1"),
        lambda: repay(s, "p1", "abc"),
        lambda: reverse(s, "ghost"),
        lambda: flag(s, "grumpy"),
        lambda: promise(s, "pr", "0", day(99)),
    ):
        with pytest.raises(Rejected):
            call()
    assert s.to_dict() == before


def test_closed_loan_refuses_events_but_accepts_reversals():
    s = repay(legal_loan(), "p1", "400", on=day(96)).state
    o = apply_loan_closed(s, {"loan_id": "L1", "reason": "sold"}, day(97), P)
    closed = o.state
    assert closed.status == "closed" and closed.stage == "closed"
    assert of_type(o, "stage.changed")[0]["reason"] == "closed"
    assert "case.unassigned" in types(o) and closed.next_transition_date is None
    with pytest.raises(Rejected, match="loan_closed"):
        repay(closed, "p2", "1")
    o = reverse(closed, "p1", on=day(99))
    assert types(o) == ["repayment.unapplied"] and o.state.stage == "closed"
    assert age(closed, day(300)).events == ()


def test_negotiation_without_relationship_manager_falls_back_to_team():
    s = missed(new_loan(rm=None), 1, day(0), "1000", on=day(40)).state
    req = request_reassignment(s, P)
    assert (req.owner_kind, req.team, req.relationship_manager_id) == (
        "relationship_manager", "negotiation", None)


def test_assignment_events_and_queue():
    s = missed(new_loan(), 1, day(0), "1000", on=day(65)).state
    o = assign(s, None, "intensive")  # nobody available: waits in the team queue
    assert o.events == () and o.state.owner.team == "intensive"
    o = assign(o.state, "c-1", "intensive")
    assert of_type(o, "case.assigned") == [{
        "loan_id": "L1", "collector_id": "c-1", "team": "intensive", "stage": "intensive",
        "business_date": day(65).isoformat(), "previous_collector_id": None}]
    o = assign(o.state, "c-2", "intensive")
    assert of_type(o, "case.assigned")[0]["previous_collector_id"] == "c-1"
    assert age(o.state, day(66)).assignment is None  # owner fits the stage


def test_events_catch_up_to_the_business_date_first():
    s = missed(new_loan(), 1, day(0), "1000", on=day(1)).state
    o = repay(s, "p1", "1", on=day(40))  # EOD skipped this loan since nothing was due
    assert [c.reason for c in o.state.history] == ["missed_payment", "aging"]
    assert of_type(o, "repayment.applied")[0]["dpd_before"] == 40


def test_state_round_trips_through_json():
    s = legal_loan()
    s = repay(s, "p1", "10.50", on=day(96)).state
    s = flag(s, "hardship", until=day(120)).state
    s = promise(s, "pr1", "100", day(100)).state
    text = json.dumps(s.to_dict())
    assert LoanState.from_dict(json.loads(text)) == s
    assert json.loads(text)["principal"] == "10000.00"


def test_handler_table_covers_the_staging_inbound_types():
    assert set(HANDLERS) == {"payment.missed", "repayment.received", "repayment.reversed",
                             "case.flag.raised", "case.flag.cleared", "promise.made",
                             "loan.closed"}


def test_cure_then_reversal_on_the_same_day_claws_back_from_the_credited_collector():
    s = legal_loan()
    cured = repay(s, "p1", "1000", on=day(96), value_date=day(96))
    assert of_type(cured, "repayment.applied")[0]["collector_id"] == "c-legal"
    assert cured.state.owner.collector_id is None  # the cure unassigned the case that day
    o = reverse(cured.state, "p1", on=day(96))
    (unapplied,) = of_type(o, "repayment.unapplied")
    assert unapplied["collector_id"] == "c-legal"
    again = LoanState.from_dict(json.loads(json.dumps(cured.state.to_dict())))
    assert again.credited == {"p1": "c-legal"}


def test_a_loan_aged_months_at_once_enters_each_stage_on_its_own_date():
    s = missed(new_loan(), 1, day(0), "1000").state
    aged = age(s, day(95))
    changes = [(h.to_stage, h.business_date, h.dpd) for h in aged.state.history]
    assert changes == [("early", day(1), 1), ("negotiation", day(31), 31),
                       ("intensive", day(61), 61), ("legal", day(91), 91)]
    assert [e.data["to_stage"] for e in aged.events if e.type == "stage.changed"] == [
        "early", "negotiation", "intensive", "legal"]


def test_evolve_is_replace_without_init():
    from dataclasses import replace

    s = legal_loan()
    changed = s.evolve(stage="write_off", dpd=181)
    assert changed == replace(s, stage="write_off", dpd=181)
    assert (s.stage, s.dpd) == ("legal", 95)  # the original is untouched
    assert changed.to_dict() == dict(s.to_dict(), stage="write_off", dpd=181)
    with pytest.raises(TypeError):
        s.evolve(stagee="x")


def _merged_policy():
    """Version 2: negotiation absorbs intensive (the stage no longer exists)."""
    import copy

    from services.staging.domain.policy import DEFAULT_POLICY_DOCUMENT, parse_policy
    doc = copy.deepcopy(DEFAULT_POLICY_DOCUMENT)
    doc["version"] = 2
    doc["stages"][2]["dpd_max"] = 90
    del doc["stages"][3]
    return parse_policy(doc).default


def test_an_event_on_the_day_of_a_policy_change_evaluates_under_the_new_policy():
    """A loan aged today under version 1 sits in a stage version 2 dropped; any event the same
    day re-evaluates it first (a promise used to fail with KeyError: dead-lettered)."""
    p2 = _merged_policy()
    s = age(missed(new_loan(rm=None), 1, day(4), "100.00").state, day(70)).state
    assert s.stage == "intensive" and s.policy_version == 1
    out = promise(s, "PR1", "50.00", day(75), policy=p2)
    assert (out.state.stage, out.state.policy_version) == ("negotiation", 2)
    assert [(e["from_stage"], e["to_stage"]) for e in of_type(out, "stage.changed")] == [
        ("intensive", "negotiation")]
    assert request_reassignment(out.state, p2) is not None
