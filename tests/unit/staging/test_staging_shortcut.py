"""End of day's shortcut equals the general path (age_to, then the owner it asks for) for every
loan it accepts: generated loans, policies (ranges, owner kinds, products) and rosters."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from staging_builders import D0, flag, missed, new_loan, promise, repay, unflag

from services.staging.domain.assignment import CollectorLoad, resolve_assignment
from services.staging.domain.errors import Rejected
from services.staging.domain.handlers import age_to, apply_assignment
from services.staging.domain.loan import LoanState, Owner
from services.staging.domain.policy import DEFAULT_POLICY, Policy, parse_policy
from services.staging.domain.shortcut import (
    DueLoan,
    PlainStep,
    assigned,
    due_loan,
    patch,
    plain_step,
)

SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
RANGED = ["current", "early", "negotiation", "intensive", "legal", "write_off"]
TEAMS = ["negotiation", "intensive", "legal", "recovery"]


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    """A valid policy: contiguous ranges (some narrow), any owner kind, some sticky."""
    names = ["current"] + [n for n in RANGED[1:] if n == "legal" or draw(st.booleans())]
    widths = draw(st.lists(st.integers(1, 40), min_size=len(names) - 1,
                           max_size=len(names) - 1))
    low, stages = 0, []
    for i, name in enumerate(names):
        high = low + widths[i] - 1 if i + 1 < len(names) else None
        kind = "none" if i == 0 else draw(st.sampled_from(
            ["none", "automated", "relationship_manager", "team"]))
        team = None
        if kind == "team" or (kind == "relationship_manager" and draw(st.booleans())):
            team = draw(st.sampled_from(TEAMS))
        stages.append({"name": name, "dpd_min": low, "dpd_max": high, "owner": kind,
                       "team": team, "sticky": draw(st.booleans())})
        low = (high or 0) + 1
    stages.append({"name": "special", "dpd_min": None, "dpd_max": None, "owner": "team",
                   "team": "legal"})
    doc = {"version": draw(st.integers(1, 3)), "stages": stages,
           "tolerance": draw(st.sampled_from(["0", "10.00", "150.5"])),
           "promise_grace_days": draw(st.integers(0, 3))}
    return parse_policy(doc).default


amounts = st.integers(1, 2_000_00).map(lambda c: str(Decimal(c) / 100))
loan_ops = st.lists(st.one_of(
    st.tuples(st.just("miss"), st.integers(0, 20), st.integers(1, 3), st.integers(0, 40),
              amounts),
    st.tuples(st.just("pay"), st.integers(0, 20), amounts),
    st.tuples(st.just("flag"), st.integers(0, 20),
              st.sampled_from(["hardship", "dispute", "cease_contact", "fraud"]),
              st.booleans(), st.none() | st.integers(0, 20)),
    st.tuples(st.just("promise"), st.integers(0, 20), amounts, st.integers(0, 5)),
), min_size=1, max_size=8)


def build(policy: Policy, ops: list[tuple[Any, ...]], rm: str | None) -> LoanState:
    state, today = new_loan(rm=rm, policy=policy), D0
    for index, op in enumerate(ops):
        today += timedelta(days=op[1])
        state = age_to(state, today, policy).state
        try:
            if op[0] == "miss":
                due = max(D0, today - timedelta(days=op[3]))
                state = missed(state, op[2], due, op[4], policy=policy).state
            elif op[0] == "pay":
                state = repay(state, f"p{index}", op[2], policy=policy).state
            elif op[0] == "flag":
                until = None if op[4] is None else today + timedelta(days=op[4])
                state = (flag(state, op[2], until=until, policy=policy) if op[3]
                         else unflag(state, op[2], policy=policy)).state
            else:
                state = promise(state, f"pr{index}", op[2], today + timedelta(op[3]),
                                policy=policy).state
        except Rejected:
            pass
    return state


def facts(state: LoanState) -> DueLoan:
    """What end of day reads of a stored loan (its document and two ledger columns)."""
    return due_loan(state.to_dict(), state.arrears, state.oldest_unpaid_due_date)


rosters = st.lists(st.tuples(st.sampled_from(["rm-1", "c1", "c2", "c3", "c4"]),
                             st.sampled_from(TEAMS), st.integers(0, 5), st.booleans(),
                             st.integers(0, 9)), max_size=6, unique_by=lambda c: c[0])


def resolver(roster: list[tuple[str, str, int, bool, int]]):  # type: ignore[no-untyped-def]
    """The roster resolution the service does (inactive relationship manager -> team)."""
    loads = [CollectorLoad(cid, team, cap, active, open_) for cid, team, cap, active, open_
             in roster]

    def resolve(request):  # type: ignore[no-untyped-def]
        rm = request.relationship_manager_id
        if request.owner_kind == "relationship_manager" and any(
                c.collector_id == rm and not c.active for c in loads):
            request = replace(request, owner_kind="team")
        return resolve_assignment(request, loads)
    return resolve


def on_date(state: LoanState, days: int) -> date:
    """Mostly around the loan's next transition (where the shortcut applies), else anywhere."""
    due = state.next_transition_date
    if due is None or days > 100:
        return state.business_date + timedelta(days=days)
    return due + timedelta(days=days % 4)


def general(state: LoanState, on: date, policy: Policy, resolve) -> tuple[LoanState, list]:  # type: ignore[no-untyped-def]
    outcome = age_to(state, on, policy)
    events = list(outcome.events)
    final = outcome.state
    if outcome.assignment is not None:
        collector_id, team = resolve(outcome.assignment)
        owned = apply_assignment(final, collector_id, team, policy)
        final, events = owned.state, events + list(owned.events)
    return final, events


def patched(state: LoanState, step: PlainStep, resolve) -> tuple[dict, list]:  # type: ignore[no-untyped-def]
    """The shortcut's document and events, the owner resolved as the service does."""
    owner, owner_events = Owner(), ()
    if step.assignment is not None:
        owner, owner_events = assigned(step, *resolve(step.assignment))
    return patch(state.to_dict(), step, owner), [*step.events, *owner_events]


@SETTINGS
@given(policies(), loan_ops, st.sampled_from([None, "", "rm-1"]), st.integers(1, 120),
       rosters, st.booleans())
def test_a_plain_step_is_exactly_the_general_path(policy, ops, rm, days, roster, owned):
    state = build(policy, ops, rm)
    if owned:
        state = apply_assignment(state, "c9", "legal", policy).state
    on = on_date(state, days)
    resolve = resolver(roster)
    step = plain_step(facts(state), on, policy)
    final, events = general(state, on, policy, resolve)
    event("shortcut" if step else "general path")
    if step is None:
        return
    assert step.assignment == age_to(state, on, policy).assignment
    doc, step_events = patched(state, step, resolve)
    assert doc == final.to_dict()
    assert LoanState.from_dict(doc) == final
    assert step_events == events


@settings(max_examples=300, deadline=None)
@given(policies(), st.integers(0, 400), st.integers(1, 60), st.integers(1, 120),
       st.sampled_from([None, "rm-1"]), amounts, rosters)
def test_unowned_overdue_loans_mostly_take_the_shortcut_and_match(policy, due_in, seen_after,
                                                                   days, rm, amount, roster):
    """A loan with one missed instalment and nothing else: the common case end of day sees."""
    due = D0 + timedelta(days=due_in)
    state = missed(new_loan(rm=rm, policy=policy), 1, due, amount,
                   on=due + timedelta(days=seen_after), policy=policy).state
    on = on_date(state, days)
    step = plain_step(facts(state), on, policy)
    resolve = resolver(roster)
    final, events = general(state, on, policy, resolve)
    new = final.history[len(state.history):]
    event("shortcut" if step else "general path")
    if step is not None:
        doc, step_events = patched(state, step, resolve)
        assert doc == final.to_dict() and step_events == events
    elif len(new) == 1 and state.owner == final.owner.__class__():
        # one transition of an unowned loan after its business date: the shortcut's case
        assert state.business_date >= new[0].business_date or state.stage == "special"


def test_the_benchmark_case_takes_the_shortcut():
    state = missed(new_loan(rm="rm1"), 1, date(2026, 1, 5), "500.00", on=date(2026, 2, 4)).state
    step = plain_step(facts(state), date(2026, 2, 5), DEFAULT_POLICY)
    assert step is not None
    assert (step.change.from_stage, step.change.to_stage, step.dpd) == ("early", "negotiation",
                                                                       31)
    assert step.assignment is not None and step.assignment.relationship_manager_id == "rm1"
    assert step.next_transition_date == date(2026, 3, 7)
